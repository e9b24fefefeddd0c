"""The GraphQL contract over real HTTP, against a served instance on each database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from api.service import Service
from api.settings import Settings
from domain.model.saga import Participant, SagaPolicy
from tests.api.live import Live, reads_sent
from tests.api.server import PLACE, GraphQLClient, graphql_client, place, stock

SCHEMA_FILE = Path(__file__).parents[2] / "schema.graphql"
POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=1),
    confirm_timeout=timedelta(seconds=1),
    shipment_timeout=timedelta(seconds=1),
    retry_backoff=timedelta(milliseconds=100),
)


class SlowOnce:
    """Makes the next call to one participant slower than any step's timeout (real time)."""

    def __init__(self) -> None:
        self.slow: set[Participant] = set()

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        return None  # every warehouse takes its shipments

    async def admit(self, participant: Participant) -> None:
        if participant in self.slow:
            self.slow.discard(participant)
            await asyncio.sleep(3)


@pytest.fixture
async def gate() -> SlowOnce:
    return SlowOnce()


@pytest.fixture
async def gql(database_url: str, gate: SlowOnce) -> AsyncIterator[GraphQLClient]:
    async with graphql_client(
        Service(Settings(database_url=database_url, policy=POLICY), gate=gate)
    ) as client:
        await stock(client)
        yield client


async def test_an_order_placed_over_http_completes_with_its_shipment(gql: GraphQLClient) -> None:
    placed = await place(gql, 2)
    assert placed["userErrors"] == []
    assert placed["order"]["status"] == "PENDING"  # type: ignore[index]

    saga = await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")  # type: ignore[index]
    assert [s["name"] for s in saga["steps"]] == [
        "CREATE_ORDER",
        "RESERVE_STOCK",
        "CONFIRM_ORDER",
        "CREATE_SHIPMENT",
    ]
    assert all(s["status"] == "SUCCEEDED" and s["attempts"] == 1 for s in saga["steps"])
    assert [e["sequence"] for e in saga["events"]] == list(range(1, 8))
    assert saga["order"]["status"] == "CONFIRMED"
    assert saga["order"]["shipment"]["picks"] == [
        {"warehouseCode": "W1", "sectionCode": "A", "sku": "TEA", "quantity": 2}
    ]
    levels = (await gql('{ stockLevels(sku: "TEA") { onHand reserved available } }'))["stockLevels"]
    assert levels == [{"onHand": 5, "reserved": 2, "available": 3}]


async def test_a_shortage_fails_and_compensates_over_http(gql: GraphQLClient) -> None:
    placed = await place(gql, 9)
    saga = await gql.wait_for_saga(placed["saga"]["id"], "FAILED")  # type: ignore[index]
    assert saga["failureReason"] == "insufficient stock: TEA short by 4 (requested 9, available 5)"
    assert saga["order"]["status"] == "CANCELLED"
    assert [s["name"] for s in saga["steps"]] == ["CREATE_ORDER", "RESERVE_STOCK", "CANCEL_ORDER"]


async def test_a_reservation_timeout_cancels_the_order_over_http(gql: GraphQLClient, gate: SlowOnce) -> None:
    gate.slow.add(Participant.INVENTORY)
    placed = await place(gql, 1)
    saga = await gql.wait_for_saga(placed["saga"]["id"], "FAILED")  # type: ignore[index]
    assert saga["failureReason"] == "RESERVE_STOCK timed out after 1s"
    assert saga["order"]["status"] == "CANCELLED"
    assert [s["name"] for s in saga["steps"]] == ["CREATE_ORDER", "RESERVE_STOCK", "CANCEL_ORDER"]


async def test_a_confirmation_timeout_releases_stock_and_cancels_over_http(
    gql: GraphQLClient, gate: SlowOnce
) -> None:
    gate.slow.add(Participant.ORDERS)
    placed = await place(gql, 3)
    saga = await gql.wait_for_saga(placed["saga"]["id"], "FAILED")  # type: ignore[index]
    assert saga["failureReason"] == "CONFIRM_ORDER timed out after 1s"
    assert [s["name"] for s in saga["steps"]][-2:] == ["RELEASE_STOCK", "CANCEL_ORDER"]
    levels = (await gql('{ stockLevels(sku: "TEA") { onHand reserved available } }'))["stockLevels"]
    assert levels == [{"onHand": 5, "reserved": 0, "available": 5}]


async def test_a_shipment_timeout_is_retried_then_completes_over_http(
    gql: GraphQLClient, gate: SlowOnce
) -> None:
    gate.slow.add(Participant.SHIPMENT)
    placed = await place(gql, 1)
    saga = await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")  # type: ignore[index]
    shipment = saga["steps"][-1]
    assert (shipment["name"], shipment["attempts"], shipment["status"]) == ("CREATE_SHIPMENT", 2, "SUCCEEDED")
    assert "StepTimedOut" in [e["type"] for e in saga["events"]]


@pytest.mark.parametrize(
    ("order", "code", "field"),
    [
        ({"customerId": "c", "lines": []}, "NO_LINES", "lines"),
        (
            {"customerId": "c", "lines": [{"sku": "TEA", "quantity": 0}]},
            "INVALID_QUANTITY",
            "lines[0].quantity",
        ),
        ({"customerId": "c", "lines": [{"sku": "NOPE", "quantity": 1}]}, "UNKNOWN_SKU", "lines[0].sku"),
        ({"customerId": "c" * 201, "lines": [{"sku": "TEA", "quantity": 1}]}, "TOO_LONG", "customerId"),
        ({"customerId": " ", "lines": [{"sku": "TEA", "quantity": 1}]}, "REQUIRED", "customerId"),
        ({"customerId": "c", "lines": [{"sku": "T" * 65, "quantity": 1}]}, "TOO_LONG", "lines[0].sku"),
    ],
)
async def test_invalid_orders_get_user_errors_and_start_nothing(
    gql: GraphQLClient, order: dict[str, object], code: str, field: str
) -> None:
    result = (await gql(PLACE, input=order))["placeOrder"]
    assert result["order"] is None and result["saga"] is None
    assert {"code": code, "field": field} in [
        {"code": e["code"], "field": e["field"]} for e in result["userErrors"]
    ]
    levels = (await gql('{ stockLevels(sku: "TEA") { reserved } }'))["stockLevels"]
    assert levels == [{"reserved": 0}]


async def test_an_idempotency_key_returns_the_same_order_or_refuses_other_input(gql: GraphQLClient) -> None:
    first = await place(gql, 1, idempotencyKey="key-1")
    again = await place(gql, 1, idempotencyKey="key-1")
    assert again["order"]["id"] == first["order"]["id"]  # type: ignore[index]
    other = await place(gql, 2, idempotencyKey="key-1")
    assert other["order"] is None
    assert [e["code"] for e in other["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]  # type: ignore[union-attr]


async def test_stock_mutations_refuse_bad_input_and_change_nothing(gql: GraphQLClient) -> None:
    result = await gql(
        """mutation {
          dup: registerWarehouse(input: {code: "W1", name: "Again", sections: []}) { userErrors { code } }
          twice: registerWarehouse(input: {code: "W9", name: "N", sections: [
            {code: "A", storageCondition: AMBIENT}, {code: "A", storageCondition: FROZEN}]}) {
            userErrors { code } }
          product: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) {
            userErrors { code } }
          frozen: registerProduct(input: {sku: "ICE", name: "Ice", storageCondition: FROZEN}) {
            userErrors { code } }
          wrong: receiveStock(input: {sku: "ICE", warehouseCode: "W1", sectionCode: "A", quantity: 1}) {
            userErrors { code } }
          nowhere: receiveStock(input: {sku: "TEA", warehouseCode: "NO", sectionCode: "A", quantity: 1}) {
            userErrors { code } }
          nosection: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "Z", quantity: 1}) {
            userErrors { code } }
          zero: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 0}) {
            userErrors { code } }
        }"""
    )
    codes = {k: [e["code"] for e in v["userErrors"]] for k, v in result.items()}
    assert codes == {
        "dup": ["DUPLICATE_WAREHOUSE"],
        "twice": ["DUPLICATE_SECTION"],
        "product": ["DUPLICATE_PRODUCT"],
        "frozen": [],
        "wrong": ["CONDITION_MISMATCH"],
        "nowhere": ["UNKNOWN_WAREHOUSE"],
        "nosection": ["UNKNOWN_SECTION"],
        "zero": ["INVALID_QUANTITY"],
    }
    levels = (await gql('{ stockLevels(sku: "TEA") { onHand } }'))["stockLevels"]
    assert levels == [{"onHand": 5}]


# A registration by its key, and the code that refuses a key registered already.
REGISTER = {
    "registerProduct": (
        """mutation ($key: String!) {
        registerProduct(input: {sku: $key, name: "N", storageCondition: AMBIENT}) {
          userErrors { code } } }""",
        "DUPLICATE_PRODUCT",
    ),
    "registerWarehouse": (
        """mutation ($key: String!) {
        registerWarehouse(input: {code: $key, name: "N", sections: []}) { userErrors { code } } }""",
        "DUPLICATE_WAREHOUSE",
    ),
}


@pytest.mark.parametrize("mutation", sorted(REGISTER))
async def test_a_key_registered_twice_at_once_is_made_once_and_the_other_is_told_it_exists(
    gql: GraphQLClient, mutation: str
) -> None:
    # On PostgreSQL the two commit lanes write them at once: both once found no row, and the second
    # insert failed on the key, answered INTERNAL_SERVER_ERROR.
    document, duplicate = REGISTER[mutation]
    for n in range(5):
        answers = await asyncio.gather(*(gql(document, key=f"NEW-{n}") for _ in range(2)))
        codes = sorted(tuple(e["code"] for e in answer[mutation]["userErrors"]) for answer in answers)
        assert codes == [(), (duplicate,)]


async def test_the_exported_schema_file_is_the_served_schema(gql: GraphQLClient) -> None:
    introspection = await gql(get_introspection_query(descriptions=True))
    served = print_schema(lexicographic_sort_schema(build_client_schema(introspection)))  # type: ignore[arg-type]
    exported = print_schema(lexicographic_sort_schema(build_schema(SCHEMA_FILE.read_text())))
    assert served == exported, (
        "schema.graphql is stale: run `ordersaga export-schema --output schema.graphql`"
    )


async def test_health_and_graphiql_are_served(gql: GraphQLClient) -> None:
    health = await gql.http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    page = await gql.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_place_order_can_await_the_outcome_of_its_saga(gql: GraphQLClient) -> None:
    completed = await place(gql, 2, awaitOutcomeMs=10_000)
    assert (completed["saga"]["status"], completed["order"]["status"]) == ("COMPLETED", "CONFIRMED")  # type: ignore[index]

    failed = await place(gql, 9, awaitOutcomeMs=10_000)
    assert (failed["saga"]["status"], failed["order"]["status"]) == ("FAILED", "CANCELLED")  # type: ignore[index]

    replayed = await place(gql, 1, idempotencyKey="once", awaitOutcomeMs=10_000)
    again = await place(gql, 1, idempotencyKey="once", awaitOutcomeMs=10_000)
    assert again["saga"] == replayed["saga"] and again["saga"]["status"] == "COMPLETED"  # type: ignore[index]


async def test_an_outcome_reached_by_the_placement_itself_is_answered_at_once(database_url: str) -> None:
    # With no gate, a placement on SQLite makes its saga's calls in its own commit: the saga settled
    # before placeOrder could watch it, and the request does not wait out its awaitOutcomeMs.
    async with graphql_client(Service(Settings(database_url=database_url)), timeout=10) as gql:
        await stock(gql)
        async with asyncio.timeout(5):
            completed = await place(gql, 2, awaitOutcomeMs=30_000)
            failed = await place(gql, 9, awaitOutcomeMs=30_000)
    assert (completed["saga"]["status"], completed["order"]["status"]) == ("COMPLETED", "CONFIRMED")
    assert (failed["saga"]["status"], failed["order"]["status"]) == ("FAILED", "CANCELLED")


async def test_an_outcome_not_reached_in_time_answers_the_saga_as_it_stands(
    gql: GraphQLClient, gate: SlowOnce
) -> None:
    gate.slow.add(Participant.SHIPMENT)  # the shipment waits out its timeout, then is retried
    placed = await place(gql, 1, awaitOutcomeMs=50)
    assert placed["saga"]["status"] not in ("COMPLETED", "FAILED")  # type: ignore[index]
    await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")  # type: ignore[index]


async def test_an_await_beyond_the_limit_is_refused(gql: GraphQLClient) -> None:
    refused = await place(gql, 1, awaitOutcomeMs=30_001)
    assert refused["order"] is None
    assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("OUT_OF_RANGE", "awaitOutcomeMs")]  # type: ignore[union-attr]


async def test_a_product_registered_through_this_process_is_ordered_without_a_catalog_lookup(
    live: Live,
) -> None:
    looked_up: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM products" in statement:
            looked_up.append(statement)

    with reads_sent(live.svc, record):
        await live.place(1)  # TEA: the live service registered it
        assert looked_up == []
        unknown = {"customerId": "c", "lines": [{"sku": "NOPE", "quantity": 1}]}
        assert (await live.gql(PLACE, input=unknown))["placeOrder"]["userErrors"][0]["code"] == "UNKNOWN_SKU"
    assert len(looked_up) == 1  # a SKU never seen is looked up
