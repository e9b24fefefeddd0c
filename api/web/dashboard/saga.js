// One saga's page, at #/sagas/<id>: its journal, steps, compensations, order and shipments, and the
// operator's actions (retry, abort, cancel the order), each confirmed and answered on the page.
import { graphql } from "./graphql.js";
import { $, ENDED, FORWARD, between, element, statusBadge, time, words } from "./dom.js";

const STEP_FIELDS = "name status attempts startedAt finishedAt lastError";
const PICK_FIELDS = "warehouseCode sectionCode sku quantity";
const SAGA = `query ($id: ID!) {
  saga(id: $id) {
    id status failureReason currentStep startedAt updatedAt
    steps { ${STEP_FIELDS} }
    compensations { ${STEP_FIELDS} }
    events { sequence type status step attempt reason occurredAt actor }
    order {
      id status customerId createdAt updatedAt lines { sku quantity } picks { ${PICK_FIELDS} }
      shipments {
        id warehouseCode status reference awaitingSince createdAt dispatchedAt picks { ${PICK_FIELDS} }
      }
    }
  }
}`;
const ANSWER = "saga { id status failureReason } order { id status } userErrors { code field message }";
const ACTIONS = {
  retry: {
    label: "Retry",
    question: "Send this parked saga on? Its parked step is tried afresh.",
    mutation: `mutation ($id: ID!) { retrySaga(input: {sagaId: $id}) { ${ANSWER} } }`,
    field: "retrySaga",
  },
  abort: {
    label: "Abort…",
    question: "Turn this saga back now? What was done is compensated and the saga fails with your reason.",
    mutation: `mutation ($id: ID!, $reason: String!) {
      abortSaga(input: {sagaId: $id, reason: $reason}) { ${ANSWER} } }`,
    field: "abortSaga",
    reason: true,
  },
  cancel: {
    label: "Cancel order…",
    question: "Cancel this order for the customer? Its saga compensates what was done.",
    mutation: `mutation ($orderId: ID!) { cancelOrder(input: {orderId: $orderId}) { ${ANSWER} } }`,
    field: "cancelOrder",
  },
};
// Journal events that record someone's decision rather than the saga's own progress.
const INTERVENTIONS = {
  SagaRetried: "an operator retried it",
  SagaAborted: "an operator aborted it",
  CustomerCancelled: "the customer cancelled the order",
};

let shown = null; // the saga on the page

export function openSaga(id) {
  $("saga-page").dataset.state = "loading";
  $("saga-answer").textContent = "";
  $("saga-answer").dataset.outcome = "";
  return load(id);
}

async function load(id) {
  let saga;
  try {
    saga = (await graphql(SAGA, { id })).saga;
  } catch (error) {
    return showMissing(id, `The saga could not be read (${error.code}): ${error.message}`);
  }
  if (!saga) return showMissing(id, `No saga has the id ${id}.`);
  shown = saga;
  render(saga);
  return saga;
}

// Read the page's saga again if `id` is it (the feed says it moved), or whatever it is when `id` is
// not given (the feed was not listening for a while).
export function refreshIfShown(id = shown?.id) {
  if (shown && shown.id === id && !$("saga-page").hidden) load(id);
}

function showMissing(id, message) {
  shown = null;
  $("saga-page").dataset.state = "missing";
  $("saga-title").textContent = `Saga ${id}`;
  $("saga-body").replaceChildren(element("p", { class: "empty" }, message));
  $("saga-actions").replaceChildren();
}

function render(saga) {
  // Drawn again whenever the feed says the saga moved: the control a keyboard user was on keeps the
  // focus, if the saga still offers it, rather than dropping it to the page.
  const focused = controlKey(document.activeElement?.closest("#saga-actions > *"));
  $("saga-page").dataset.state = "shown";
  $("saga-page").dataset.status = saga.status;
  $("saga-title").replaceChildren("Saga ", element("code", {}, saga.id));
  $("saga-actions").replaceChildren(...actionsFor(saga), download(saga));
  if (focused) [...$("saga-actions").children].find((control) => controlKey(control) === focused)?.focus();
  $("saga-body").replaceChildren(
    element(
      "dl",
      { class: "facts" },
      fact("Status", statusBadge(saga.status)),
      fact("Started", time(saga.startedAt, true)),
      fact("Last change", time(saga.updatedAt, true)),
      fact("Took", ENDED.has(saga.status) ? between(saga.startedAt, saga.updatedAt) : "still going"),
      saga.failureReason && fact("Why", element("span", { class: "reason" }, saga.failureReason)),
    ),
    stepTable("Steps", "steps", saga.steps.filter((s) => FORWARD.includes(s.name))),
    saga.compensations.length
      ? stepTable("Compensations", "compensations", saga.compensations)
      : element("p", { class: "muted" }, "Nothing was compensated."),
    orderSection(saga.order),
    journal(saga.events),
  );
}

// What names a control of the saga's actions across drawings: its action, or its id.
const controlKey = (control) => control && (control.dataset.action ?? control.id);

let downloaded = null; // the object URL of the shown saga's history, let go when it is redrawn

// The saga's whole history as the page read it (journal events, steps, compensations, order and
// shipments), as a JSON file to keep or attach to a ticket.
function download(saga) {
  if (downloaded) URL.revokeObjectURL(downloaded);
  const history = { exportedAt: new Date().toISOString(), saga };
  downloaded = URL.createObjectURL(new Blob([JSON.stringify(history, null, 2)], { type: "application/json" }));
  return element(
    "a",
    { id: "saga-download", class: "button", href: downloaded, download: `saga-${saga.id}.json` },
    "Download history (JSON)",
  );
}

const fact = (label, value) => element("div", {}, element("dt", {}, label), element("dd", {}, value));

function table(caption, id, headings, rows) {
  return element(
    "table",
    { id, class: "detail" },
    element("caption", {}, caption),
    element("thead", {}, element("tr", {}, ...headings.map((h) => element("th", { scope: "col" }, h)))),
    element("tbody", {}, ...rows),
  );
}

function stepTable(caption, id, steps) {
  return table(
    caption,
    id,
    ["Step", "Status", "Attempts", "Started", "Ended", "Took", "Last error"],
    steps.map((s) =>
      element(
        "tr",
        { class: `step-${s.status.toLowerCase()}` },
        element("th", { scope: "row" }, words(s.name)),
        element("td", {}, words(s.status)),
        element("td", {}, String(s.attempts)),
        element("td", {}, time(s.startedAt)),
        element("td", {}, s.finishedAt ? time(s.finishedAt) : "—"),
        element("td", {}, between(s.startedAt, s.finishedAt)),
        element("td", {}, s.lastError ?? ""),
      ),
    ),
  );
}

function picks(caption, id, list) {
  return table(
    caption,
    id,
    ["Warehouse", "Section", "SKU", "Quantity"],
    list.map((p) =>
      element(
        "tr",
        {},
        ...[p.warehouseCode, p.sectionCode, p.sku, String(p.quantity)].map((v) => element("td", {}, v)),
      ),
    ),
  );
}

function orderSection(order) {
  if (!order) return element("p", { class: "muted" }, "Its order is not known.");
  return element(
    "section",
    { class: "order", "aria-labelledby": "order-title" },
    element("h3", { id: "order-title" }, "Order ", element("code", {}, order.id)),
    element(
      "dl",
      { class: "facts" },
      fact("Customer", order.customerId),
      fact("Status", statusBadge(order.status)),
      fact("Placed", time(order.createdAt, true)),
    ),
    table(
      "Lines",
      "order-lines",
      ["SKU", "Quantity"],
      order.lines.map((l) => element("tr", {}, element("td", {}, l.sku), element("td", {}, String(l.quantity)))),
    ),
    order.shipments.length
      ? element("div", { id: "shipments" }, ...order.shipments.map(shipment))
      : order.picks.length
        ? picks("Reserved stock (no shipment yet)", "order-picks", order.picks)
        : element("p", { class: "muted" }, "No stock reserved, no shipment."),
  );
}

// What a shipment's time is, by its status: when it was requested, for one the warehouse has not
// created (yet, or ever: it refused it), else when it was created.
const SHIPMENT_TIME = { REQUESTED: "requested", REJECTED: "requested" };

// One warehouse's shipment: its status and the warehouse's reference for it, when it was created (or
// requested) and dispatched, since when a remote warehouse that accepted it is awaited, its picks.
function shipment(s) {
  return element(
    "div",
    { class: "shipment", "data-warehouse": s.warehouseCode },
    element(
      "p",
      {},
      `Shipment from ${s.warehouseCode} `,
      element("code", {}, s.id),
      " ",
      statusBadge(s.status),
      ...(s.reference ? [" reference ", element("code", { class: "reference" }, s.reference)] : []),
      ` ${SHIPMENT_TIME[s.status] ?? "created"} `,
      time(s.createdAt, true),
      ...(s.dispatchedAt ? [" dispatched ", time(s.dispatchedAt, true)] : []),
    ),
    s.awaitingSince &&
      element("p", { class: "awaiting" }, "Awaiting the warehouse since ", time(s.awaitingSince, true)),
    picks(`Picks from ${s.warehouseCode}`, `shipment-picks-${s.warehouseCode}`, s.picks),
  );
}

// Who made an intervention: what they did, and the subject of their token when it was recorded.
function who(event) {
  const did = INTERVENTIONS[event.type];
  if (!did) return "";
  return event.actor ? `${did} (${event.actor})` : did;
}

function journal(events) {
  return table(
    `Journal (${events.length} ${events.length === 1 ? "event" : "events"})`,
    "journal",
    ["#", "When", "Event", "Step", "Attempt", "Status after", "Reason", "Who"],
    events.map((e) =>
      element(
        "tr",
        { "data-type": e.type, class: INTERVENTIONS[e.type] ? "intervention" : "" },
        element("td", {}, String(e.sequence)),
        element("td", {}, time(e.occurredAt, true)),
        element("td", {}, e.type),
        element("td", {}, e.step ? words(e.step) : ""),
        element("td", {}, e.attempt ? String(e.attempt) : ""),
        element("td", {}, e.status),
        element("td", {}, e.reason ?? ""),
        element("td", {}, who(e)),
      ),
    ),
  );
}

// ------------------------------------------------------------------------------------------ actions

function actionsFor(saga) {
  const parked = saga.status === "NEEDS_ATTENTION";
  const turningBack = ["STOCK_RESERVATION_FAILED", "COMPENSATING"].includes(saga.status);
  const available = {
    retry: parked,
    abort: !ENDED.has(saga.status) && !turningBack,
    // As cancelOrder allows: until one of its shipments is dispatched, a COMPLETED saga too; not once
    // the order is turning back (CANCELLING) or turned back (CANCELLED).
    cancel:
      Boolean(saga.order) &&
      !["PARTIALLY_SHIPPED", "SHIPPED", "CANCELLING", "CANCELLED"].includes(saga.order.status),
  };
  return Object.entries(ACTIONS)
    .filter(([name]) => available[name])
    .map(([name, action]) =>
      element("button", { type: "button", "data-action": name, onclick: () => confirmAction(name, saga) }, action.label),
    );
}

function confirmAction(name, saga) {
  const action = ACTIONS[name];
  const dialog = $("action-dialog");
  $("action-question").textContent = action.question;
  $("action-saga").textContent = saga.id;
  const reason = $("action-reason");
  reason.value = "";
  reason.required = Boolean(action.reason);
  $("action-reason-field").hidden = !action.reason;
  $("action-confirm").textContent = action.label.replace("…", "");
  dialog.returnValue = "";
  // Closed, the dialog gives the focus back to what opened it: to its successor if the page was
  // drawn again meanwhile.
  const opener = document.activeElement;
  dialog.onclose = () => {
    if (opener && !opener.isConnected) $("saga-actions").querySelector(`[data-action="${name}"]`)?.focus();
    if (dialog.returnValue === "confirm") act(name, saga, reason.value.trim());
  };
  dialog.showModal();
}

async function act(name, saga, reason) {
  const action = ACTIONS[name];
  const answer = $("saga-answer");
  answer.dataset.outcome = "pending";
  answer.textContent = `${action.label.replace("…", "")}: sent…`;
  try {
    const data = await graphql(action.mutation, { id: saga.id, orderId: saga.order?.id, reason });
    const payload = data[action.field];
    if (payload.userErrors.length) {
      answer.dataset.outcome = "refused";
      answer.textContent = `Refused: ${payload.userErrors.map((e) => `${e.code}: ${e.message}`).join("; ")}`;
    } else {
      answer.dataset.outcome = "done";
      answer.textContent = `Done: the saga is now ${payload.saga?.status ?? "changed"}.`;
    }
  } catch (error) {
    answer.dataset.outcome = "refused";
    answer.textContent = `Refused: ${error.code}: ${error.message}`;
  }
  await load(saga.id);
}
