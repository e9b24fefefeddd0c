// The operator console: the saga list (#/), one saga's page (#/sagas/<id>), the metrics panel and its
// charts, all kept live by the sagaFeed subscription. Plain ES modules, no build step, and nothing
// loaded from another host (uPlot comes from /vendor).
import { graphql, subscribe } from "./graphql.js";
import { $, RUNNING } from "./dom.js";
import { setUpBulk } from "./bulk.js";
import { SAGA_FIELDS, loadMore, merge, movingSagas, reload } from "./list.js";
import { openSaga, refreshIfShown } from "./saga.js";
import { pollMetrics } from "./charts.js";
import { openWebhooks } from "./webhooks.js";

const FEED = `subscription { sagaFeed { sequence saga { ${SAGA_FIELDS} } } }`;
const SAGA = `query ($id: ID!) { saga(id: $id) { ${SAGA_FIELDS} } }`;
const FIND = `query ($id: ID!) {
  node(id: $id) { __typename ... on Saga { id } ... on Order { saga { id } } }
}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ------------------------------------------------------------------------------------------ routing

function route() {
  const match = location.hash.match(/^#\/sagas\/([^/]+)$/);
  const webhooks = location.hash.match(/^#\/webhooks(?:\/([^/]+))?$/);
  $("list-view").hidden = Boolean(match || webhooks);
  $("saga-page").hidden = !match;
  $("webhooks-page").hidden = !webhooks;
  if (match) {
    openSaga(decodeURIComponent(match[1])).then(() => $("saga-title").focus());
  } else if (webhooks) {
    openWebhooks(webhooks[1] && decodeURIComponent(webhooks[1])).then(() => $("webhooks-title").focus());
  }
}

// ------------------------------------------------------------------------------------- live updates

function live() {
  // Registered with the server now, so a page read from here on misses nothing the feed will not
  // bring. What moved while the page was not subscribed was not sent: read the list's first page
  // and the sagas it shows as moving again, and the saga whose page is open.
  reload(readFilter());
  refreshIfShown();
  for (const id of movingSagas()) {
    graphql(SAGA, { id }).then(({ saga }) => saga && merge(saga), () => {});
  }
}

function receive({ sagaFeed }) {
  merge(sagaFeed.saga);
  refreshIfShown(sagaFeed.saga.id);
}

function showConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection").textContent = text;
}

// ------------------------------------------------------------------------------ search and filter

function readFilter() {
  const form = $("filter");
  const status = [...form.querySelectorAll("input[name=status]:checked")].flatMap((box) =>
    box.value === "RUNNING" ? RUNNING : [box.value],
  );
  const time = (name) => (form.elements[name].value ? new Date(form.elements[name].value).toISOString() : null);
  const customer = form.elements.customer.value.trim();
  // "In the last …" counts back from when the filter is applied; "between…" takes the two fields.
  const within = form.elements.within.value;
  const between = within === "between";
  return {
    status: status.length ? status : null,
    customerId: customer || null,
    startedAfter: between ? time("after") : within ? new Date(Date.now() - Number(within) * 1000).toISOString() : null,
    startedBefore: between ? time("before") : null,
  };
}

function showBetween() {
  $("between").hidden = $("filter").elements.within.value !== "between";
}

async function search(event) {
  event.preventDefault();
  const wanted = $("search-input").value.trim();
  const said = $("search-result");
  said.textContent = "";
  if (!wanted) return;
  if (!UUID.test(wanted)) {
    // Not an id: the customer's sagas.
    $("filter").elements.customer.value = wanted;
    await reload(readFilter());
    said.textContent = `Sagas of customer ${wanted}.`;
    return;
  }
  try {
    const { node } = await graphql(FIND, { id: wanted });
    const sagaId = node?.__typename === "Saga" ? node.id : node?.saga?.id;
    if (sagaId) location.hash = `#/sagas/${sagaId}`;
    else said.textContent = `No saga or order has the id ${wanted}.`;
  } catch (error) {
    said.textContent = `The search failed (${error.code}): ${error.message}`;
  }
}

$("search").addEventListener("submit", search);
$("filter").addEventListener("submit", (event) => {
  event.preventDefault();
  reload(readFilter());
});
$("filter").addEventListener("reset", () =>
  setTimeout(() => {
    showBetween();
    reload(readFilter());
  }),
);
$("filter").elements.within.addEventListener("change", showBetween);
$("more").addEventListener("click", loadMore);
$("metrics-window").addEventListener("change", pollMetrics);
window.addEventListener("hashchange", route);

route();
setUpBulk(readFilter);
reload(readFilter()); // shown at once; read again when the feed is live
subscribe(FEED, { onData: receive, onState: showConnection, onLive: live });
pollMetrics();
