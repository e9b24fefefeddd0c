// Bulk actions on the saga list: select sagas (a row's box, every row shown, or every saga that
// matches the filter, whose ids the server reads page by page), confirm with the count, then retry or
// abort them through retrySagas / abortSagas, 100 a request, showing progress and each saga's result.
// Each saga is handled on its own on the server, so a run cut off midway can simply be sent again.
import { graphql } from "./graphql.js";
import { $, element, sagaLink } from "./dom.js";

const CHUNK = 100; // the most ids retrySagas and abortSagas take in one call
const MOST = 5000; // sagas one selection holds at most: past it, narrow the filter
const RESULT = "results { sagaId outcome code message } userErrors { code field message }";
const ACTIONS = {
  retry: {
    verb: "Retry",
    mutation: `mutation ($ids: [ID!]!) { retrySagas(input: {sagaIds: $ids}) { ${RESULT} } }`,
    field: "retrySagas",
    question: (n) => `Retry ${n}? Each parked saga's parked step is tried afresh.`,
  },
  abort: {
    verb: "Abort",
    mutation: `mutation ($ids: [ID!]!, $reason: String!) {
      abortSagas(input: {sagaIds: $ids, reason: $reason}) { ${RESULT} } }`,
    field: "abortSagas",
    question: (n) => `Abort ${n}? What each has done is compensated, and each fails with your reason.`,
    reason: true,
  },
};
const IDS = `query ($first: Int, $after: String, $status: [SagaStatus!], $customerId: String,
                     $startedAfter: DateTime, $startedBefore: DateTime) {
  sagas(first: $first, after: $after, status: $status, customerId: $customerId,
        startedAfter: $startedAfter, startedBefore: $startedBefore) {
    edges { node { id } }
    pageInfo { hasNextPage endCursor }
  }
}`;

const selected = new Set();
let running = false;

const sagas = (n) => `${n.toLocaleString()} ${n === 1 ? "saga" : "sagas"}`;

// The box that selects a row's saga.
export function selectBox(id) {
  return element("input", {
    type: "checkbox",
    class: "select",
    "aria-label": `Select saga ${id}`,
    checked: selected.has(id),
    onchange: (event) => {
      if (event.target.checked) selected.add(id);
      else selected.delete(id);
      showSelection();
    },
  });
}

function showSelection(note = "") {
  const n = selected.size;
  $("bulk-count").textContent = (n ? `${sagas(n)} selected.` : "None selected.") + (note ? ` ${note}` : "");
  for (const id of ["bulk-retry", "bulk-abort", "bulk-clear"]) $(id).disabled = !n || running;
  $("bulk-all").disabled = running;
  for (const box of document.querySelectorAll("#sagas .select")) {
    box.checked = selected.has(box.closest("tr").dataset.sagaId);
  }
  const shown = [...document.querySelectorAll("#sagas tr")];
  $("select-shown").checked = shown.length > 0 && shown.every((row) => selected.has(row.dataset.sagaId));
}

// Every saga the filter matches, by id, newest first: read from the server page by page, so the
// selection is what the filter selects there, not only the rows loaded here.
async function selectMatching(filter) {
  $("bulk-count").textContent = "Finding the sagas that match…";
  let page = { hasNextPage: true, endCursor: null };
  const found = [];
  while (page.hasNextPage && found.length < MOST) {
    const { sagas } = await graphql(IDS, { ...filter, first: CHUNK, after: page.endCursor });
    found.push(...sagas.edges.map((edge) => edge.node.id));
    page = sagas.pageInfo;
  }
  selected.clear();
  for (const id of found.slice(0, MOST)) selected.add(id);
  showSelection(page.hasNextPage ? `(the newest ${MOST.toLocaleString()}: narrow the filter for the rest)` : "");
}

function confirmBulk(name) {
  const action = ACTIONS[name];
  const dialog = $("bulk-dialog");
  const reason = $("bulk-reason");
  $("bulk-question").textContent = action.question(sagas(selected.size));
  reason.value = "";
  reason.required = Boolean(action.reason);
  $("bulk-reason-field").hidden = !action.reason;
  $("bulk-confirm").textContent = `${action.verb} ${sagas(selected.size)}`;
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue === "confirm") run(name, [...selected], reason.value.trim());
  };
  dialog.showModal();
}

function resultRow(result) {
  return element(
    "tr",
    { "data-saga-id": result.sagaId, "data-outcome": result.outcome },
    element("td", {}, sagaLink(result.sagaId)),
    element("td", {}, element("span", { class: `outcome outcome-${result.outcome.toLowerCase()}` }, result.outcome)),
    element("td", {}, result.code ? `${result.code}: ${result.message}` : ""),
  );
}

async function run(name, ids, reason) {
  const action = ACTIONS[name];
  running = true;
  showSelection();
  const progress = $("bulk-progress");
  const said = $("bulk-said");
  const body = $("bulk-results").querySelector("tbody");
  const tally = {};
  $("bulk-run").hidden = false;
  $("bulk-run").dataset.state = "running";
  body.replaceChildren();
  progress.max = ids.length;
  progress.value = 0;
  const tell = () =>
    `${action.verb}: ${progress.value.toLocaleString()} of ${sagas(ids.length)} handled` +
    Object.entries(tally).map(([outcome, n]) => `, ${n} ${outcome}`).join("");
  said.textContent = tell();
  try {
    for (let start = 0; start < ids.length; start += CHUNK) {
      const chunk = ids.slice(start, start + CHUNK);
      const payload = (await graphql(action.mutation, { ids: chunk, reason }))[action.field];
      if (payload.userErrors.length) {
        throw new Error(payload.userErrors.map((e) => `${e.code}: ${e.message}`).join("; "));
      }
      for (const result of payload.results) {
        tally[result.outcome] = (tally[result.outcome] ?? 0) + 1;
        selected.delete(result.sagaId);
        body.append(resultRow(result));
      }
      progress.value = start + chunk.length;
      said.textContent = tell();
    }
    $("bulk-run").dataset.state = "done";
  } catch (error) {
    // What was sent before is done or not, saga by saga; the rest stay selected to be sent again.
    $("bulk-run").dataset.state = "stopped";
    said.textContent = `${tell()}. Stopped: ${error.message}. The rest are still selected: send again to finish.`;
  }
  running = false;
  showSelection();
}

// `currentFilter()` is the list's filter as the form now says.
export function setUpBulk(currentFilter) {
  $("bulk-all").addEventListener("click", () =>
    selectMatching(currentFilter()).catch((error) => showSelection(`The sagas could not be read: ${error.message}`)),
  );
  $("bulk-retry").addEventListener("click", () => confirmBulk("retry"));
  $("bulk-abort").addEventListener("click", () => confirmBulk("abort"));
  $("bulk-clear").addEventListener("click", () => {
    selected.clear();
    showSelection();
  });
  $("select-shown").addEventListener("change", (event) => {
    for (const row of document.querySelectorAll("#sagas tr")) {
      if (event.target.checked) selected.add(row.dataset.sagaId);
      else selected.delete(row.dataset.sagaId);
    }
    showSelection();
  });
  showSelection();
}
