// The live saga dashboard: follows sagaFeed over graphql-transport-ws, and polls sagaMetrics.
// Plain browser JavaScript, no build step and nothing loaded from elsewhere.
"use strict";

const SAGA_FIELDS = `
  id status failureReason currentStep startedAt updatedAt
  steps { name status attempts lastError }
  order { customerId lines { sku quantity } }`;
const EVENT_FIELDS = "sequence type status step attempt reason occurredAt";
const FEED = `subscription { sagaFeed { ${EVENT_FIELDS} saga { ${SAGA_FIELDS} } } }`;
const SAGA = `query ($id: ID!) { saga(id: $id) { ${SAGA_FIELDS} events { ${EVENT_FIELDS} } } }`;
const METRICS = `query ($since: DateTime!, $until: DateTime!) {
  sagaMetrics(since: $since, until: $until) {
    started completed failed needsAttention completionRate averageDurationMs p95DurationMs
    compensations timeouts
    steps { name attempts succeeded failed timedOut averageDurationMs p95DurationMs }
  }
}`;

const FORWARD = ["CREATE_ORDER", "RESERVE_STOCK", "CONFIRM_ORDER", "CREATE_SHIPMENT"];
const ENDED = new Set(["COMPLETED", "FAILED"]);
const KEPT = 200; // sagas shown at most; the oldest finished ones make room for new ones
const METRICS_EVERY = 5000;
const METRICS_AFTER_ERROR = 60000;

const sagas = new Map(); // saga id -> {saga, events: Map(sequence -> event), historyOpen}
const $ = (id) => document.getElementById(id);
const at = (iso) => Date.parse(iso);
let metricsTimer;

// ------------------------------------------------------------------------------------------- live feed

function connect(retries = 0) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/graphql`, "graphql-transport-ws");
  const send = (message) => socket.send(JSON.stringify(message));
  socket.onopen = () => send({ type: "connection_init" });
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    switch (message.type) {
      case "connection_ack":
        send({ id: "feed", type: "subscribe", payload: { query: FEED } });
        retries = 0;
        showConnection("live", "Live");
        catchUp();
        break;
      case "next":
        if (message.payload.errors) {
          socket.close(); // the feed ended (it fell behind): start over
        } else {
          receive(message.payload.data.sagaFeed);
        }
        break;
      case "ping":
        send({ type: "pong" });
        break;
      case "error":
      case "complete":
        socket.close();
        break;
    }
  };
  socket.onclose = () => {
    showConnection("offline", "Disconnected, reconnecting…");
    setTimeout(() => connect(retries + 1), Math.min(10000, 500 * 2 ** retries));
  };
}

function showConnection(state, text) {
  const element = $("connection");
  element.dataset.state = state;
  element.textContent = text;
}

// Transitions made while the page was not connected were not sent to it: read again the sagas it
// shows as still moving.
function catchUp() {
  for (const [id, entry] of sagas) {
    if (!ENDED.has(entry.saga.status)) loadSaga(id);
  }
}

async function loadSaga(id) {
  const saga = (await graphql(SAGA, { id })).data?.saga;
  if (!saga) return;
  const entry = sagas.get(id);
  for (const event of saga.events) entry.events.set(event.sequence, event);
  adopt(entry, saga);
  render(id);
}

function receive(update) {
  const id = update.saga.id;
  let entry = sagas.get(id);
  if (!entry) {
    entry = { saga: update.saga, events: new Map(), historyOpen: false };
    sagas.set(id, entry);
    // The feed starts at the moment of subscribing: fetch what happened to this saga before.
    if (update.sequence > 1) loadSaga(id);
  }
  const { saga, ...event } = update;
  entry.events.set(event.sequence, event);
  adopt(entry, saga);
  render(id);
  forgetOldest();
}

// Snapshots come from the feed and from queries, in any order: keep the newest.
function adopt(entry, saga) {
  if (at(saga.updatedAt) >= at(entry.saga.updatedAt)) entry.saga = saga;
}

function forgetOldest() {
  if (sagas.size <= KEPT) return;
  const finished = [...sagas.values()]
    .filter((entry) => ENDED.has(entry.saga.status))
    .sort((a, b) => at(a.saga.startedAt) - at(b.saga.startedAt));
  for (const entry of finished.slice(0, sagas.size - KEPT)) {
    sagas.delete(entry.saga.id);
    document.querySelector(`tr[data-saga-id="${entry.saga.id}"]`)?.remove();
  }
}

// ------------------------------------------------------------------------------------------- rendering

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const words = (name) => name.charAt(0) + name.slice(1).toLowerCase().replaceAll("_", " ");
const time = (iso) =>
  element("time", { datetime: iso }, new Date(iso).toLocaleTimeString([], { hour12: false }));

function render(id) {
  const { saga, events, historyOpen } = sagas.get(id);
  const row = element(
    "tr",
    { "data-saga-id": id, "data-status": saga.status, "data-started": saga.startedAt },
    element("td", {}, sagaCell(saga)),
    element("td", {}, statusCell(saga)),
    element("td", {}, stepsCell(saga)),
    element("td", {}, failureCell(saga, events, historyOpen, id)),
    element("td", {}, time(saga.updatedAt)),
  );
  const body = $("sagas");
  const shown = body.querySelector(`tr[data-saga-id="${id}"]`);
  if (shown) {
    shown.replaceWith(row);
  } else {
    const older = [...body.rows].find((other) => at(other.dataset.started) < at(saga.startedAt));
    body.insertBefore(row, older ?? null);
  }
  applyFilter();
}

function sagaCell(saga) {
  const lines = saga.order?.lines.map((line) => `${line.quantity} × ${line.sku}`).join(", ") ?? "";
  return element(
    "div",
    { class: "saga" },
    element("code", { title: saga.id }, saga.id.slice(0, 8)),
    element("span", { class: "muted" }, saga.order?.customerId ?? ""),
    element("span", { class: "muted" }, lines),
  );
}

function statusCell(saga) {
  const step = saga.steps.find((s) => s.name === saga.currentStep);
  const where = step ? `at ${words(step.name)}, attempt ${step.attempts}` : null;
  return element(
    "div",
    {},
    element("span", { class: `status status-${saga.status.toLowerCase()}` }, saga.status),
    where && element("span", { class: "muted where" }, where),
  );
}

function stepChip(name, step) {
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

function failureCell(saga, events, historyOpen, id) {
  const compensations = saga.steps.filter((step) => !FORWARD.includes(step.name));
  const lines = [...events.values()].sort((a, b) => a.sequence - b.sequence).map(historyLine);
  const history = element(
    "details",
    historyOpen ? { open: "" } : {},
    element("summary", {}, `History (${events.size} ${events.size === 1 ? "event" : "events"})`),
    element("ol", { class: "history" }, ...lines),
  );
  history.addEventListener("toggle", () => {
    sagas.get(id).historyOpen = history.open;
  });
  return element(
    "div",
    { class: "failure" },
    saga.failureReason && element("p", { class: "reason" }, saga.failureReason),
    compensations.length
      ? element(
          "div",
          {},
          element("span", { class: "muted" }, "Compensation"),
          element("ol", { class: "steps" }, ...compensations.map((step) => stepChip(step.name, step))),
        )
      : null,
    history,
  );
}

function historyLine(event) {
  const step = event.step ? ` ${words(event.step)}` : "";
  const attempt = event.attempt ? ` (attempt ${event.attempt})` : "";
  return element(
    "li",
    { value: String(event.sequence) },
    element("span", {}, `${event.type}${step}${attempt} → ${event.status}`),
    event.reason && element("span", { class: "muted" }, `: ${event.reason}`),
  );
}

function applyFilter() {
  const show = document.querySelector('input[name="show"]:checked').value;
  const rows = [...$("sagas").rows];
  for (const row of rows) {
    const status = row.dataset.status;
    const running = !ENDED.has(status) && status !== "NEEDS_ATTENTION";
    row.hidden = !(show === "all" || show === status || (show === "running" && running));
  }
  $("empty").hidden = rows.length > 0;
}

// --------------------------------------------------------------------------------------------- metrics

async function pollMetrics() {
  const until = new Date();
  const since = new Date(until.getTime() - Number($("metrics-window").value) * 1000);
  let next = METRICS_EVERY;
  try {
    const body = await graphql(METRICS, { since: since.toISOString(), until: until.toISOString() });
    const metrics = body.data?.sagaMetrics;
    // A server without metrics (or one failing to compute them) leaves the panel out.
    showMetrics(metrics ? "shown" : "unavailable");
    if (metrics) renderMetrics(metrics);
    else next = METRICS_AFTER_ERROR;
  } catch {
    showMetrics("unavailable");
  }
  // One timer only: a poll started by changing the window replaces the one waiting.
  clearTimeout(metricsTimer);
  metricsTimer = setTimeout(pollMetrics, next);
}

function showMetrics(state) {
  $("metrics").dataset.state = state;
  $("metrics").hidden = state !== "shown";
}

const count = (n) => (n ?? 0).toLocaleString();
function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
// completionRate is a ratio: completed over sagas that ended in the window.
const percent = (rate) => (rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)} %`);

function renderMetrics(m) {
  const figures = [
    ["Started", count(m.started)],
    ["Completed", count(m.completed)],
    ["Failed", count(m.failed)],
    ["Needs attention", count(m.needsAttention)],
    ["Completion rate", percent(m.completionRate)],
    ["Average duration", duration(m.averageDurationMs)],
    ["p95 duration", duration(m.p95DurationMs)],
    ["Compensations", count(m.compensations)],
    ["Timeouts", count(m.timeouts)],
  ];
  $("figures").replaceChildren(
    ...figures.map(([label, value]) => element("div", {}, element("dt", {}, label), element("dd", {}, value))),
  );
  $("step-metrics").replaceChildren(
    ...m.steps.map((s) =>
      element(
        "tr",
        {},
        element("th", { scope: "row" }, words(s.name)),
        ...[s.attempts, s.succeeded, s.failed, s.timedOut].map((n) => element("td", {}, count(n))),
        element("td", {}, duration(s.averageDurationMs)),
        element("td", {}, duration(s.p95DurationMs)),
      ),
    ),
  );
}

// -------------------------------------------------------------------------------------------------- io

async function graphql(query, variables) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

for (const radio of document.querySelectorAll('input[name="show"]')) {
  radio.addEventListener("change", applyFilter);
}
$("metrics-window").addEventListener("change", pollMetrics);
connect();
pollMetrics();
