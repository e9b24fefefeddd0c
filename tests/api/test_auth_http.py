"""Authentication and roles over real HTTP, on SQLite and PostgreSQL: every operation per role, bad
tokens, customer against customer, operators, admins, the routes outside GraphQL, rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from strawberry.types.graphql import OperationType

from api.access.rules import RULES
from api.graphql.schema import schema
from api.settings import Settings
from domain.model.saga import SagaPolicy
from tests.api.tokens import (
    ADMIN,
    AUTH,
    CUSTOMER_A,
    CUSTOMER_B,
    OPERATOR,
    SECRET,
    WAREHOUSE,
    Caller,
    codes,
    served,
    token,
)

# Who may call each operation, written out apart from api/access/rules.py so that each row is checked.
CUS, OPS, ADM, WHS = "customer", "operator", "admin", "warehouse"
EXPECTED: dict[str, tuple[set[str], str]] = {
    "order": ({CUS, OPS, ADM}, '{ order(id: "none") { id } }'),
    "saga": ({CUS, OPS, ADM}, '{ saga(id: "none") { id } }'),
    "node": ({CUS, OPS, ADM}, '{ node(id: "none") { id } }'),
    "nodes": ({CUS, OPS, ADM}, '{ nodes(ids: ["none"]) { id } }'),
    "orders": ({CUS, OPS, ADM}, "{ orders { edges { node { id } } } }"),
    "sagas": ({CUS, OPS, ADM}, "{ sagas { edges { node { id } } } }"),
    "journalEvents": ({CUS, OPS, ADM}, "{ journalEvents(first: 1) { edges { cursor } } }"),
    "products": ({CUS, OPS, ADM}, "{ products { sku available } }"),
    "stockLevels": ({OPS, ADM}, '{ stockLevels(sku: "TEA") { onHand } }'),
    "warehouses": ({OPS, ADM}, "{ warehouses { code } }"),
    "inventoryContention": ({OPS, ADM}, "{ inventoryContention { stockReservations } }"),
    "sagaMetrics": ({OPS, ADM}, "{ sagaMetrics { started } }"),
    "sagaFailures": ({OPS, ADM}, "{ sagaFailures { count } }"),
    "sagaActivity": (
        {OPS, ADM},
        '{ sagaActivity(since: "2026-01-01T00:00:00Z", until: "2026-01-01T01:00:00Z") { completed } }',
    ),
    "sagasNeedingAttention": ({OPS, ADM}, "{ sagasNeedingAttention { id } }"),
    "participantFaults": ({ADM}, "{ participantFaults { participant } }"),
    "stockMovements": ({OPS, ADM}, '{ stockMovements(sku: "TEA") { edges { node { onHandChange } } } }'),
    "webhookEndpoints": ({ADM}, "{ webhookEndpoints { id url } }"),
    # Allowed roles get BAD_USER_INPUT here (no such endpoint), the others FORBIDDEN.
    "webhookDeliveries": ({OPS, ADM}, '{ webhookDeliveries(endpointId: "none") { edges { cursor } } }'),
    "placeOrder": (
        {CUS, OPS, ADM},
        'mutation { placeOrder(input: {lines: [{sku: "TEA", quantity: 1}]}) { userErrors { code } } }',
    ),
    "cancelOrder": (
        {CUS, OPS, ADM},
        'mutation { cancelOrder(input: {orderId: "none"}) { userErrors { code } } }',
    ),
    "registerWarehouse": (
        {OPS, ADM},
        'mutation { registerWarehouse(input: {code: "W1", name: "One", sections: '
        '[{code: "A", storageCondition: AMBIENT}]}) { userErrors { code } } }',
    ),
    "registerProduct": (
        {OPS, ADM},
        'mutation { registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) '
        "{ userErrors { code } } }",
    ),
    "receiveStock": (
        {OPS, ADM},
        'mutation { receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 1}) '
        "{ userErrors { code } } }",
    ),
    "retrySaga": ({OPS, ADM}, 'mutation { retrySaga(input: {sagaId: "none"}) { userErrors { code } } }'),
    "abortSaga": (
        {OPS, ADM},
        'mutation { abortSaga(input: {sagaId: "none", reason: "test"}) { userErrors { code } } }',
    ),
    "retrySagas": ({OPS, ADM}, 'mutation { retrySagas(input: {sagaIds: ["none"]}) { userErrors { code } } }'),
    "abortSagas": (
        {OPS, ADM},
        'mutation { abortSagas(input: {sagaIds: ["none"], reason: "test"}) { userErrors { code } } }',
    ),
    "dispatchShipment": (
        {OPS, ADM, WHS},
        'mutation { dispatchShipment(input: {shipmentId: "none"}) { userErrors { code } } }',
    ),
    "reportShipmentOutcome": (
        {ADM, WHS},
        'mutation { reportShipmentOutcome(input: {commandId: "none", outcome: CREATED}) '
        "{ userErrors { code } } }",
    ),
    "updateWarehouse": (
        {OPS, ADM},
        'mutation { updateWarehouse(input: {code: "W1", name: "Uno"}) { userErrors { code } } }',
    ),
    "adjustStock": (
        {OPS, ADM},
        'mutation { adjustStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", '
        'quantityDelta: 1, reason: "count"}) { userErrors { code } } }',
    ),
    "setParticipantFault": (
        {ADM},
        "mutation { setParticipantFault(input: {participant: SHIPMENT}) { userErrors { code } } }",
    ),
    "clearParticipantFaults": ({ADM}, "mutation { clearParticipantFaults { userErrors { code } } }"),
    "loseCommitAnswers": ({ADM}, "mutation { loseCommitAnswers(input: {count: 0}) { userErrors { code } } }"),
    "createWebhookEndpoint": (
        {ADM},
        'mutation { createWebhookEndpoint(input: {url: "ftp://example.com"}) { userErrors { code } } }',
    ),
    "updateWebhookEndpoint": (
        {ADM},
        'mutation { updateWebhookEndpoint(input: {id: "none"}) { userErrors { code } } }',
    ),
    "deleteWebhookEndpoint": (
        {ADM},
        'mutation { deleteWebhookEndpoint(input: {id: "none"}) { userErrors { code } } }',
    ),
    "redeliverWebhooks": (
        {OPS, ADM},
        'mutation { redeliverWebhooks(input: {endpointId: "none"}) { userErrors { code } } }',
    ),
    # Subscriptions are tried over WebSocket (test_auth_ws.py).
    "sagaUpdates": ({CUS, OPS, ADM}, ""),
    "sagaFeed": ({CUS, OPS, ADM}, ""),
}

ROLE_HEADERS = {CUS: CUSTOMER_A, OPS: OPERATOR, ADM: ADMIN, WHS: WAREHOUSE}


async def test_every_operation_of_the_schema_has_a_rule_and_an_expectation() -> None:
    types = " ".join(f"{kind.value}: {kind.value}Type {{ fields {{ name }} }}" for kind in OperationType)
    roots = f"{{ __schema {{ {types} }} }}"
    found = await schema.execute(roots, context_value={"identity": None})
    assert found.data is not None, found.errors
    for kind in OperationType:
        fields = {field["name"] for field in found.data["__schema"][kind.value]["fields"]}
        assert set(RULES[kind]) == fields, kind
    assert {field for rules in RULES.values() for field in rules} == set(EXPECTED)


@pytest.fixture
async def http(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with served(Settings(database_url=database_url, auth=AUTH)) as server:
        yield server.http


async def stock(http: httpx.AsyncClient, quantity: int = 10) -> None:
    operator = Caller(http, OPERATOR)
    for name in ("registerWarehouse", "registerProduct"):
        await operator.data(EXPECTED[name][1])
    await operator.data(
        'mutation ($q: Int!) { receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", '
        "quantity: $q}) { userErrors { code } } }",
        q=quantity,
    )


async def test_each_role_may_call_exactly_the_operations_its_row_allows(http: httpx.AsyncClient) -> None:
    await stock(http)
    for operation, (allowed, document) in EXPECTED.items():
        if not document:
            continue
        anonymous = await Caller(http, {})(document)
        assert codes(anonymous) == ["UNAUTHENTICATED"], operation
        assert anonymous["data"] is None, operation
        for role, headers in ROLE_HEADERS.items():
            body = await Caller(http, headers)(document)
            if role in allowed:
                assert not {"UNAUTHENTICATED", "FORBIDDEN"} & set(codes(body)), (operation, role, body)
            else:
                assert codes(body) == ["FORBIDDEN"], (operation, role, body)
                assert body["data"] is None, (operation, role)


async def test_a_forbidden_field_refuses_the_whole_operation_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    await stock(http)
    customer = Caller(http, CUSTOMER_A)
    body = await customer(
        'mutation { a: placeOrder(input: {lines: [{sku: "TEA", quantity: 1}]}) { order { id } } '
        'b: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 1000}) '
        "{ userErrors { code } } }"
    )
    assert codes(body) == ["FORBIDDEN"]
    assert (await customer.data("{ orders { edges { node { id } } } }"))["orders"]["edges"] == []
    levels = (await Caller(http, OPERATOR).data('{ stockLevels(sku: "TEA") { onHand } }'))["stockLevels"]
    assert levels == [{"onHand": 10}]


async def test_a_fragment_does_not_hide_a_field_from_the_rules(http: httpx.AsyncClient) -> None:
    body = await Caller(http, CUSTOMER_A)(
        "query { ...Figures } fragment Figures on Query { ... on Query { sagaMetrics { started } } }"
    )
    assert codes(body) == ["FORBIDDEN"]


def _signed(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _claims(**changes: Any) -> dict[str, Any]:
    import time

    claims: dict[str, Any] = {"sub": "customer-a", "roles": ["customer"], "exp": int(time.time()) + 300}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _unsigned(claims: dict[str, Any]) -> str:
    import base64
    import json

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


BAD_TOKENS = {
    "expired": token("customer-a", "customer", ttl=timedelta(minutes=-5)),
    "badly signed": _signed(_claims(), key="another secret that is long enough to sign"),
    "unsigned (alg none)": _unsigned(_claims()),
    "malformed": "not.a.token",
    "another algorithm than the key's": _signed(_claims(), algorithm="HS512"),
    "without exp": _signed(_claims(exp=None)),
    "without sub": _signed(_claims(sub=None)),
    "roles not a list": _signed(_claims(roles="admin")),
    "warehouses not a list": _signed(_claims(roles=["warehouse"], warehouses="W1")),
    "warehouses not strings": _signed(_claims(roles=["warehouse"], warehouses=[1])),
    "sub with NUL": _signed(_claims(sub="customer-a\x00")),
    "sub with a lone surrogate": _signed(_claims(sub="customer-a\ud800")),
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
async def test_a_bad_token_is_unauthenticated(http: httpx.AsyncClient, kind: str) -> None:
    body = await Caller(http, {"Authorization": f"Bearer {BAD_TOKENS[kind]}"})(
        "{ orders { edges { cursor } } }"
    )
    assert codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None


async def test_an_authorization_that_is_not_bearer_is_unauthenticated(http: httpx.AsyncClient) -> None:
    body = await Caller(http, {"Authorization": "Basic YWRtaW46YWRtaW4="})("{ products { sku } }")
    assert codes(body) == ["UNAUTHENTICATED"]


async def test_a_token_expired_within_the_leeway_is_still_accepted(http: httpx.AsyncClient) -> None:
    recent = token("customer-a", "customer", ttl=timedelta(seconds=-5))
    body = await Caller(http, {"Authorization": f"Bearer {recent}"})("{ products { sku } }")
    assert "errors" not in body


async def test_anonymous_callers_get_health_readiness_introspection_and_the_dashboard_shell(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/readyz")).status_code == 200
    assert (await http.get("/dashboard/")).status_code == 200
    body = await Caller(http, {})("{ __schema { queryType { name } } __typename }")
    assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}, "__typename": "Query"}


async def test_metrics_are_for_operators_and_admins(http: httpx.AsyncClient) -> None:
    anonymous = await http.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert (
        await http.get("/metrics", headers={"Authorization": f"Bearer {BAD_TOKENS['expired']}"})
    ).status_code == 401
    assert (await http.get("/metrics", headers=CUSTOMER_A)).status_code == 403
    for headers in (OPERATOR, ADMIN):
        answer = await http.get("/metrics", headers=headers)
        assert answer.status_code == 200
        assert "ordersaga_sagas_started_total" in answer.text


PLACE = """
mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id customerId } saga { id } userErrors { code field message } }
}
"""
ORDER_AND_SAGA = """
query ($order: ID!, $saga: ID!) {
  order(id: $order) { id customerId }
  saga(id: $saga) { id order { customerId } }
  orderNode: node(id: $order) { id }
  sagaNode: node(id: $saga) { id }
}
"""


async def place(caller: Caller, **input: Any) -> dict[str, Any]:
    order = {"lines": [{"sku": "TEA", "quantity": 1}], **input}
    return (await caller.data(PLACE, input=order))["placeOrder"]  # type: ignore[no-any-return]


async def test_a_customer_places_in_its_own_name_and_sees_only_its_own(http: httpx.AsyncClient) -> None:
    await stock(http)
    a, b = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B)
    placed = await place(a)
    assert placed["order"]["customerId"] == "customer-a"  # customerId omitted: the token's subject
    assert (await place(a, customerId="customer-a"))["userErrors"] == []
    ids = {"order": placed["order"]["id"], "saga": placed["saga"]["id"]}

    mine = await a.data(ORDER_AND_SAGA, **ids)
    assert mine["order"]["customerId"] == "customer-a"
    assert mine["saga"]["order"]["customerId"] == "customer-a"
    assert mine["orderNode"] and mine["sagaNode"]
    # Another customer's order and saga read as null, never as forbidden.
    assert await b.data(ORDER_AND_SAGA, **ids) == {
        "order": None,
        "saga": None,
        "orderNode": None,
        "sagaNode": None,
    }

    lists = (
        "query ($c: String) { orders(customerId: $c) { edges { node { customerId } } } "
        "sagas(customerId: $c) { edges { node { order { customerId } } } } }"
    )
    for customer_id in (None, "customer-a"):
        own = await a.data(lists, c=customer_id)
        assert [e["node"]["customerId"] for e in own["orders"]["edges"]] == ["customer-a"] * 2
        assert len(own["sagas"]["edges"]) == 2
        others = await b.data(lists, c=customer_id)
        assert others == {"orders": {"edges": []}, "sagas": {"edges": []}}


async def test_a_customer_cannot_order_for_another_nor_cancel_anothers_order(http: httpx.AsyncClient) -> None:
    await stock(http)
    a, b = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B)
    refused = await place(b, customerId="customer-a")
    assert refused["userErrors"] == [
        {
            "code": "FORBIDDEN",
            "field": "customerId",
            "message": "an order can be placed only in the caller's own name",
        }
    ]
    assert refused["order"] is None
    assert (await Caller(http, OPERATOR).data("{ orders { edges { cursor } } }"))["orders"]["edges"] == []

    placed = await place(a)
    cancel = (
        "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { order { status } userErrors { code } } }"
    )
    assert (await b.data(cancel, id=placed["order"]["id"]))["cancelOrder"] == {
        "order": None,
        "userErrors": [{"code": "UNKNOWN_ORDER"}],
    }
    # Its own is found: cancelled, or too late once its saga has shipped it.
    own = (await a.data(cancel, id=placed["order"]["id"]))["cancelOrder"]["userErrors"]
    assert own in ([], [{"code": "ORDER_ALREADY_SHIPPED"}])


async def test_idempotency_keys_belong_to_the_caller(http: httpx.AsyncClient) -> None:
    await stock(http)
    a, b = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B)
    first = await place(a, idempotencyKey="checkout-1")
    again = await place(a, idempotencyKey="checkout-1")
    theirs = await place(b, idempotencyKey="checkout-1")
    assert again["order"]["id"] == first["order"]["id"]
    assert theirs["order"]["id"] != first["order"]["id"]
    assert theirs["order"]["customerId"] == "customer-b"


EVENTS = "query ($id: ID!) { saga(id: $id) { status events { type actor } } }"
SAGA_ACTION = "mutation ($input: %sInput!) { %s(input: $input) { saga { status } userErrors { code } } }"


async def saga_reaches(caller: Caller, saga_id: str, status: str) -> list[dict[str, Any]]:
    """The saga's events once it has `status`."""
    for _ in range(500):
        saga = (await caller.data(EVENTS, id=saga_id))["saga"]
        if saga["status"] == status:
            return saga["events"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"saga {saga_id} did not reach {status}: {saga}")


async def test_interventions_record_who_made_them_shown_to_customers_as_their_role_only(
    database_url: str,
) -> None:
    # Operators act for every customer; a customer sees itself as itself, staff as their role.
    settings = Settings(
        database_url=database_url, auth=AUTH, fault_injection=True, policy=SagaPolicy(max_attempts=1)
    )
    async with served(settings) as server:
        http = server.http
        await stock(http)
        admin, operator, a = Caller(http, ADMIN), Caller(http, OPERATOR), Caller(http, CUSTOMER_A)
        fault = "mutation ($f: SetParticipantFaultInput!) { setParticipantFault(input: $f) {"
        fault += " faults { delayMs } } }"
        await admin.data(fault, f={"participant": "SHIPMENT", "failNext": 100})
        parked = await place(operator, customerId="customer-a")  # on the customer's behalf
        assert parked["order"]["customerId"] == "customer-a"
        await saga_reaches(a, parked["saga"]["id"], "NEEDS_ATTENTION")  # the customer sees it too
        await admin.data("mutation { clearParticipantFaults { userErrors { code } } }")
        retry = await operator.data(
            SAGA_ACTION % ("RetrySaga", "retrySaga"), input={"sagaId": parked["saga"]["id"]}
        )
        assert retry["retrySaga"]["userErrors"] == []
        events = await saga_reaches(a, parked["saga"]["id"], "COMPLETED")
        assert [e["actor"] for e in events if e["actor"]] == ["operator"]
        assert {"type": "SagaRetried", "actor": "operator"} in events
        events = await saga_reaches(operator, parked["saga"]["id"], "COMPLETED")
        assert {"type": "SagaRetried", "actor": "operator-1"} in events

        await admin.data(fault, f={"participant": "SHIPMENT", "delayMs": 60000})
        cancelled, aborted, by_admin = await place(a), await place(a), await place(a)
        await saga_reaches(a, aborted["saga"]["id"], "SHIPMENT_CREATING")
        cancel = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { userErrors { code } } }"
        assert (await a.data(cancel, id=cancelled["order"]["id"]))["cancelOrder"]["userErrors"] == []
        assert (await admin.data(cancel, id=by_admin["order"]["id"]))["cancelOrder"]["userErrors"] == []
        abort = await operator.data(
            SAGA_ACTION % ("AbortSaga", "abortSaga"),
            input={"sagaId": aborted["saga"]["id"], "reason": "fraud"},
        )
        assert abort["abortSaga"]["userErrors"] == []
        interventions = {"own cancel": cancelled, "operator's abort": aborted, "admin's cancel": by_admin}
        shown = {
            caller: {
                kind: [
                    e["actor"]
                    for e in await saga_reaches(caller, placed["saga"]["id"], "FAILED")
                    if e["actor"] is not None
                ]
                for kind, placed in interventions.items()
            }
            for caller in (a, operator, admin)
        }
        assert shown[a] == {
            "own cancel": ["customer-a"],
            "operator's abort": ["operator"],
            "admin's cancel": ["admin"],
        }
        staff = {
            "own cancel": ["customer-a"],
            "operator's abort": ["operator-1"],
            "admin's cancel": ["admin-1"],
        }
        assert shown[operator] == shown[admin] == staff

        every = await operator.data("{ orders { edges { node { customerId } } } }")
        assert [e["node"]["customerId"] for e in every["orders"]["edges"]] == ["customer-a"] * 4


async def test_mutations_past_the_rate_limit_are_refused_with_a_retry_hint(database_url: str) -> None:
    settings = Settings(database_url=database_url, auth=AUTH, mutation_limits="3/minute")
    async with served(settings) as server:
        http = server.http
        a, b = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B)
        cancel = 'mutation { cancelOrder(input: {orderId: "none"}) { userErrors { code } } }'
        for _ in range(3):
            assert (await a.data(cancel))["cancelOrder"]["userErrors"] == [{"code": "UNKNOWN_ORDER"}]
        limited = await a(cancel)
        assert codes(limited) == ["RATE_LIMITED"]
        assert 1 <= limited["errors"][0]["extensions"]["retryAfterSeconds"] <= 60
        assert limited["data"] is None
        assert "errors" not in await a("{ products { sku } }")  # queries are not limited
        assert "errors" not in await b(cancel)  # another principal has its own count


async def test_an_operation_with_more_mutations_than_a_limit_admits_is_refused_outright(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, auth=AUTH, mutation_limits="3/minute")
    async with served(settings) as server:
        a = Caller(server.http, CUSTOMER_A)
        one = 'cancelOrder(input: {orderId: "none"}) { userErrors { code } }'
        four = " ".join(f"c{n}: {one}" for n in range(4))
        refused = await a(f"mutation {{ {four} }}")
        # Waiting would never help: the operation is refused as too large, and counts nothing.
        assert codes(refused) == ["BAD_REQUEST"] and "at most 3 mutations" in refused["errors"][0]["message"]
        cancel = 'mutation { cancelOrder(input: {orderId: "none"}) { userErrors { code } } }'
        for _ in range(3):
            assert (await a.data(cancel))["cancelOrder"]["userErrors"] == [{"code": "UNKNOWN_ORDER"}]


async def test_development_mode_makes_every_caller_an_admin(database_url: str) -> None:
    async with served(Settings(database_url=database_url)) as server:
        http = server.http
        anyone = Caller(http, {})
        assert "errors" not in await anyone("{ participantFaults { participant } sagaMetrics { started } }")
        assert (await http.get("/metrics")).status_code == 200
        bogus = Caller(http, {"Authorization": "Bearer whatever"})
        assert "errors" not in await bogus("{ participantFaults { participant } }")


async def test_node_finds_for_a_customer_only_its_own_shipments_and_of_the_catalog_only_products(
    http: httpx.AsyncClient,
) -> None:
    await stock(http)
    a, b, operator = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B), Caller(http, OPERATOR)
    placed = await place(a)
    await saga_reaches(a, placed["saga"]["id"], "COMPLETED")
    order = await a.data("query ($id: ID!) { order(id: $id) { shipment { id } } }", id=placed["order"]["id"])
    shipment_id = order["order"]["shipment"]["id"]
    product_id = (await a.data("{ products { id } }"))["products"][0]["id"]
    warehouse_id = (await operator.data("{ warehouses { id } }"))["warehouses"][0]["id"]
    find = "query ($id: ID!) { node(id: $id) { id } }"

    assert (await a.data(find, id=shipment_id))["node"] == {"id": shipment_id}
    assert (await b.data(find, id=shipment_id))["node"] is None
    assert (await b.data(find, id=product_id))["node"] == {"id": product_id}
    assert (await b.data(find, id=warehouse_id))["node"] is None  # warehouses are for staff
    assert (await operator.data(find, id=warehouse_id))["node"] == {"id": warehouse_id}
    assert (await operator.data(find, id=shipment_id))["node"] == {"id": shipment_id}
