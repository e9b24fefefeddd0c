// The saga list: pages of the `sagas` connection, newest first, with the live feed merged in.
//
// Rows are kept by saga id, so a saga shown by a page and by the feed is one row (no duplicates).
// The feed is subscribed before the first page is read, so a saga that starts meanwhile is in the
// page or in the feed (no gaps); a saga the feed brings in is shown when it falls within the range
// the loaded pages cover, and older ones come with the next page.
import { graphql } from "./graphql.js";
import { selectBox } from "./bulk.js";
import { $, ENDED, FORWARD, at, element, sagaLink, statusBadge, time, words } from "./dom.js";

export const SAGA_FIELDS = `
  id status failureReason currentStep startedAt updatedAt
  steps { name status attempts lastError }
  order { id customerId lines { sku quantity } }`;
const PAGE = `query ($first: Int, $after: String, $status: [SagaStatus!], $customerId: String,
                     $startedAfter: DateTime, $startedBefore: DateTime) {
  sagas(first: $first, after: $after, status: $status, customerId: $customerId,
        startedAfter: $startedAfter, startedBefore: $startedBefore) {
    edges { node { ${SAGA_FIELDS} } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const PAGE_SIZE = 50;
// Rows shown at most, so the page stays quick: past it the oldest go, and older sagas are reached by
// narrowing the filter (an earlier "until", a status, a customer) rather than by paging further.
const SHOWN = 1000;

const rows = new Map(); // saga id -> the saga as last seen
let filter = {};
let next = { hasNextPage: false, endCursor: null };
let loading = 0; // a newer load makes the answers of older ones moot
let arrived = null; // sagas the feed brought while a first page was being read

// Newest first, as the connection orders them: by start time, then id.
const newer = (a, b) => at(a.startedAt) - at(b.startedAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function matches(saga) {
  if (filter.status?.length && !filter.status.includes(saga.status)) return false;
  if (filter.customerId && saga.order?.customerId !== filter.customerId) return false;
  if (filter.startedAfter && at(saga.startedAt) < at(filter.startedAfter)) return false;
  if (filter.startedBefore && at(saga.startedAt) >= at(filter.startedBefore)) return false;
  return true;
}

export async function reload(newFilter = filter) {
  filter = newFilter;
  const mine = ++loading;
  arrived = [];
  $("sagas-state").dataset.state = "loading";
  const page = await graphql(PAGE, { ...filter, first: PAGE_SIZE }).catch(showError);
  if (mine !== loading) return; // a newer load took over, and `arrived` with it
  if (!page) {
    arrived = null;
    return;
  }
  rows.clear();
  $("sagas").replaceChildren();
  take(page.sagas);
  // The page may have been read before some of them moved: merged again, the newest wins.
  const meanwhile = arrived;
  arrived = null;
  for (const saga of meanwhile) merge(saga);
}

export async function loadMore() {
  const mine = loading;
  const page = await graphql(PAGE, { ...filter, first: PAGE_SIZE, after: next.endCursor }).catch(showError);
  if (page && mine === loading) take(page.sagas);
}

function take(connection) {
  for (const { node } of connection.edges) show(node);
  next = connection.pageInfo;
  trim();
  showState();
}

function showError(error) {
  $("sagas-state").dataset.state = "error";
  $("sagas-message").textContent = `The sagas could not be read (${error.code}): ${error.message}`;
}

// A saga from the feed or from a saga page's query: shown if it belongs in the list as it stands.
export function merge(saga) {
  arrived?.push(saga);
  const shown = rows.get(saga.id);
  if (shown) {
    if (at(saga.updatedAt) < at(shown.updatedAt)) return;
    if (!matches(saga)) return forget(saga.id);
    return show(saga);
  }
  if (!matches(saga)) return;
  const body = $("sagas");
  const oldest = body.rows.length ? rows.get(body.rows[body.rows.length - 1].dataset.sagaId) : null;
  if (next.hasNextPage && oldest && newer(saga, oldest) < 0) return; // the next pages hold it
  show(saga);
  trim();
  showState();
}

export function movingSagas() {
  return [...rows.values()].filter((saga) => !ENDED.has(saga.status)).map((saga) => saga.id);
}

function show(saga) {
  rows.set(saga.id, saga);
  const row = render(saga);
  const shown = document.querySelector(`#sagas tr[data-saga-id="${saga.id}"]`);
  if (shown) return shown.replaceWith(row);
  const body = $("sagas");
  // Rows are few and ordered, so the first older one is found by a scan from the top.
  const older = [...body.rows].find((other) => newer(rows.get(other.dataset.sagaId), saga) < 0);
  body.insertBefore(row, older ?? null);
}

function forget(id) {
  rows.delete(id);
  document.querySelector(`#sagas tr[data-saga-id="${id}"]`)?.remove();
  showState();
}

function trim() {
  const body = $("sagas");
  while (body.rows.length > SHOWN) forget(body.rows[body.rows.length - 1].dataset.sagaId);
  if (rows.size >= SHOWN) next = { hasNextPage: false, endCursor: null, capped: true };
}

function showState() {
  $("sagas-state").dataset.state = rows.size ? "shown" : "empty";
  $("sagas-message").textContent = rows.size
    ? ""
    : "No saga matches. Place an order (or widen the filter) and it shows up here.";
  $("more").hidden = !next.hasNextPage;
  $("sagas-count").textContent = next.capped
    ? `the newest ${rows.size.toLocaleString()} shown; narrow the filter to reach older ones`
    : `${rows.size.toLocaleString()} shown${next.hasNextPage ? ", more below" : ""}`;
}

// ------------------------------------------------------------------------------------------- a row

function render(saga) {
  return element(
    "tr",
    { "data-saga-id": saga.id, "data-status": saga.status, "data-started": saga.startedAt },
    element("td", {}, selectBox(saga.id)),
    element("td", {}, sagaCell(saga)),
    element("td", {}, statusCell(saga)),
    element("td", {}, stepsCell(saga)),
    element("td", {}, failureCell(saga)),
    element("td", {}, time(saga.startedAt), element("br"), element("span", { class: "muted" }, "updated "), time(saga.updatedAt)),
  );
}

function sagaCell(saga) {
  const lines = saga.order?.lines.map((line) => `${line.quantity} × ${line.sku}`).join(", ") ?? "";
  return element(
    "div",
    { class: "saga" },
    sagaLink(saga.id),
    element("span", { class: "muted" }, saga.order?.customerId ?? ""),
    element("span", { class: "muted" }, lines),
  );
}

function statusCell(saga) {
  const step = saga.steps.find((s) => s.name === saga.currentStep);
  const where = step ? `at ${words(step.name)}, attempt ${step.attempts}` : null;
  return element("div", {}, statusBadge(saga.status), where && element("span", { class: "muted where" }, where));
}

export function stepChip(name, step) {
  const state = step ? step.status : "PENDING";
  const attempts = step && step.attempts > 1 ? ` ×${step.attempts}` : "";
  return element(
    "li",
    { class: `step step-${state.toLowerCase()}`, title: step?.lastError ?? "" },
    element("span", { class: "step-name" }, words(name)),
    element("span", { class: "step-state" }, words(state) + attempts),
  );
}

function stepsCell(saga) {
  const byName = new Map(saga.steps.map((step) => [step.name, step]));
  return element("ol", { class: "steps" }, ...FORWARD.map((name) => stepChip(name, byName.get(name))));
}

function failureCell(saga) {
  const compensations = saga.steps.filter((step) => !FORWARD.includes(step.name));
  return element(
    "div",
    { class: "failure" },
    saga.failureReason && element("p", { class: "reason" }, saga.failureReason),
    compensations.length > 0 &&
      element(
        "div",
        {},
        element("span", { class: "muted" }, "Compensation"),
        element("ol", { class: "steps" }, ...compensations.map((step) => stepChip(step.name, step))),
      ),
  );
}
