"""A storm of orders on one hot product, over real HTTP on each database: it sells exactly the stock
there is, never more, and every order that misses out fails with a shortage, never an error."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from api.service import Service
from api.settings import Settings
from domain.model.saga import SagaPolicy
from tests.api.server import PLACE, GraphQLClient, graphql_client

ORDERS = 200
pytestmark = pytest.mark.slow  # ORDERS orders at once
STOCK = {("W1", "A"): 30, ("W2", "B"): 20}
# Generous deadlines: the storm queues every saga's steps at once on a shared machine, and a step that
# timed out would fail its order for a reason other than stock. Contention is transient and retried.
POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=60),
    confirm_timeout=timedelta(seconds=60),
    shipment_timeout=timedelta(seconds=60),
    retry_backoff=timedelta(milliseconds=50),
)
SETTLE_S = 240
CATALOG = """mutation {
  w1: registerWarehouse(input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]})
    { userErrors { code } }
  w2: registerWarehouse(input: {code: "W2", name: "Two", sections: [{code: "B", storageCondition: AMBIENT}]})
    { userErrors { code } }
  hot: registerProduct(input: {sku: "HOT", name: "Hot item", storageCondition: AMBIENT})
    { userErrors { code } }
  r1: receiveStock(input: {sku: "HOT", warehouseCode: "W1", sectionCode: "A", quantity: 30})
    { userErrors { code } }
  r2: receiveStock(input: {sku: "HOT", warehouseCode: "W2", sectionCode: "B", quantity: 20})
    { userErrors { code } }
}"""
STOCK_OF_HOT = """{
  stockLevels(sku: "HOT") { warehouseCode sectionCode onHand reserved available }
  products { sku onHand reserved available }
  inventoryContention { stockReservations stockConflicts stockConflictsExhausted }
}"""
SHORT = "insufficient stock: HOT short by 1 (requested 1, available 0)"


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    svc = Service(Settings(database_url=database_url, policy=POLICY))
    limits = httpx.Limits(max_connections=ORDERS)
    async with graphql_client(svc, timeout=SETTLE_S, limits=limits) as client:
        created = await client(CATALOG)
        assert all(result["userErrors"] == [] for result in created.values())
        yield client


async def test_a_storm_of_orders_sells_exactly_the_stock_there_is(gql: GraphQLClient) -> None:
    placed = await asyncio.gather(
        *(
            gql(PLACE, input={"customerId": f"c-{n}", "lines": [{"sku": "HOT", "quantity": 1}]})
            for n in range(ORDERS)
        )
    )
    assert all(p["placeOrder"]["userErrors"] == [] for p in placed)

    async with asyncio.timeout(SETTLE_S):
        sagas = [
            await gql.wait_for_saga(
                p["placeOrder"]["saga"]["id"], "COMPLETED", "FAILED", "NEEDS_ATTENTION", seconds=SETTLE_S
            )
            for p in placed
        ]

    assert Counter(s["status"] for s in sagas) == {"COMPLETED": 50, "FAILED": 150}
    assert {s["failureReason"] for s in sagas if s["status"] == "FAILED"} == {SHORT}
    picked: Counter[tuple[str, str]] = Counter()
    for saga in sagas:
        if saga["status"] == "COMPLETED":
            for pick in saga["order"]["shipment"]["picks"]:
                picked[pick["warehouseCode"], pick["sectionCode"]] += pick["quantity"]

    stock = await gql(STOCK_OF_HOT)
    levels = {(s["warehouseCode"], s["sectionCode"]): s for s in stock["stockLevels"]}
    assert {key: (s["onHand"], s["reserved"], s["available"]) for key, s in levels.items()} == {
        key: (quantity, quantity, 0) for key, quantity in STOCK.items()
    }
    assert picked == {key: s["reserved"] for key, s in levels.items()}
    assert stock["products"] == [{"sku": "HOT", "onHand": 50, "reserved": 50, "available": 0}]
    contention = stock["inventoryContention"]
    assert contention["stockReservations"] >= ORDERS
    assert contention["stockConflictsExhausted"] <= contention["stockConflicts"]
