// The webhooks page (#/webhooks): the endpoints (admins), and one endpoint's deliveries that did not go
// through at once (#/webhooks/<endpoint id>, operators and admins), with redelivery of failed ones.
import { graphql } from "./graphql.js";
import { $, element, duration, time, statusBadge } from "./dom.js";

const ENDPOINTS = `{ webhookEndpoints { id url events description enabled disabledReason failingSince createdAt } }`;
const DELIVERIES = `query ($id: ID!, $status: [WebhookDeliveryStatus!], $after: String) {
  webhookDeliveries(endpointId: $id, status: $status, first: 50, after: $after) {
    edges { node {
      eventId eventType sagaId status attempts responseCode latencyMs error nextAttemptAt updatedAt
    } }
    pageInfo { hasNextPage endCursor }
  }
}`;
const REDELIVER = `mutation ($input: RedeliverWebhooksInput!) {
  redeliverWebhooks(input: $input) { redelivered userErrors { code message } }
}`;
const ENABLE = `mutation ($id: ID!) {
  updateWebhookEndpoint(input: {id: $id, enabled: true}) { endpoint { id } userErrors { code message } }
}`;

let shown = null; // the endpoint whose deliveries are listed
let after = null; // the cursor of the last delivery listed

const say = (text) => ($("webhooks-answer").textContent = text);

function endpointRow(endpoint) {
  const state = endpoint.enabled
    ? statusBadge("ENABLED")
    : element("span", {}, statusBadge("DISABLED"), " ", endpoint.disabledReason ?? "");
  const enabling = endpoint.enabled
    ? null
    : element("button", { type: "button", "data-action": "enable", onclick: () => enable(endpoint.id) }, "Enable");
  return element(
    "tr",
    { "data-endpoint-id": endpoint.id },
    element("td", {}, element("a", { href: `#/webhooks/${endpoint.id}` }, element("code", {}, endpoint.url))),
    element("td", {}, endpoint.events ? endpoint.events.join(", ") : "every event"),
    element("td", {}, endpoint.description ?? ""),
    element("td", {}, state),
    element("td", {}, time(endpoint.failingSince, true)),
    element("td", {}, enabling),
  );
}

function deliveryRow(delivery) {
  const again =
    delivery.status === "FAILED"
      ? element(
          "button",
          { type: "button", "data-action": "redeliver", onclick: () => redeliver(delivery.eventId) },
          "Redeliver",
        )
      : null;
  return element(
    "tr",
    { "data-event-id": delivery.eventId, "data-status": delivery.status },
    element("td", {}, element("code", {}, delivery.eventId)),
    element("td", {}, delivery.eventType),
    element("td", {}, element("a", { href: `#/sagas/${delivery.sagaId}` }, element("code", {}, delivery.sagaId))),
    element("td", {}, statusBadge(delivery.status)),
    element("td", {}, String(delivery.attempts)),
    element("td", {}, delivery.responseCode === null ? "—" : String(delivery.responseCode)),
    element("td", {}, duration(delivery.latencyMs)),
    element("td", {}, delivery.error ?? ""),
    element("td", {}, time(delivery.nextAttemptAt, true)),
    element("td", {}, again),
  );
}

async function listEndpoints() {
  try {
    const { webhookEndpoints } = await graphql(ENDPOINTS);
    $("endpoints").replaceChildren(...webhookEndpoints.map(endpointRow));
    $("endpoints-state").textContent = webhookEndpoints.length ? "" : "No endpoints: createWebhookEndpoint registers one.";
  } catch (error) {
    $("endpoints").replaceChildren();
    $("endpoints-state").textContent = `The endpoints cannot be listed (${error.code}): ${error.message}`;
  }
}

async function listDeliveries(more = false) {
  const status = $("deliveries-status").value;
  if (!more) after = null;
  try {
    const { webhookDeliveries } = await graphql(DELIVERIES, { id: shown, status: status ? [status] : null, after });
    const rows = webhookDeliveries.edges.map((edge) => deliveryRow(edge.node));
    if (more) $("deliveries").append(...rows);
    else $("deliveries").replaceChildren(...rows);
    after = webhookDeliveries.pageInfo.endCursor ?? after;
    $("more-deliveries").hidden = !webhookDeliveries.pageInfo.hasNextPage;
    $("deliveries-state").textContent =
      $("deliveries").children.length ? "" : "None: every event went through at the first attempt.";
  } catch (error) {
    $("deliveries").replaceChildren();
    $("more-deliveries").hidden = true;
    $("deliveries-state").textContent = `The deliveries cannot be listed (${error.code}): ${error.message}`;
  }
}

async function redeliver(eventId = null) {
  try {
    const { redeliverWebhooks } = await graphql(REDELIVER, { input: { endpointId: shown, eventId } });
    const [problem] = redeliverWebhooks.userErrors;
    say(problem ? `Not redelivered (${problem.code}): ${problem.message}` : `${redeliverWebhooks.redelivered} sent again.`);
  } catch (error) {
    say(`Not redelivered (${error.code}): ${error.message}`);
  }
  await listDeliveries();
}

async function enable(id) {
  try {
    const { updateWebhookEndpoint } = await graphql(ENABLE, { id });
    const [problem] = updateWebhookEndpoint.userErrors;
    say(problem ? `Not enabled (${problem.code}): ${problem.message}` : "Enabled.");
  } catch (error) {
    say(`Not enabled (${error.code}): ${error.message}`);
  }
  await listEndpoints();
}

// Show the page: the endpoints, and `endpointId`'s deliveries when one is given.
export async function openWebhooks(endpointId) {
  shown = endpointId;
  say("");
  $("deliveries-panel").hidden = !endpointId;
  if (endpointId) $("deliveries-title").textContent = `Deliveries to ${endpointId}`;
  await Promise.all([listEndpoints(), endpointId ? listDeliveries() : null]);
}

$("deliveries-status").addEventListener("change", () => listDeliveries());
$("more-deliveries").addEventListener("click", () => listDeliveries(true));
$("redeliver-failed").addEventListener("click", () => redeliver());
