"""Inventory queries over real HTTP, on each database: warehouses with their sections and the stock in
each, products with their totals, and the counters of contention on stock rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api.service import Service
from api.settings import Settings
from domain.model.saga import SagaPolicy
from persistence.write.participants import RESERVE_ATTEMPTS
from tests.api.server import PLACE, GraphQLClient, graphql_client
from tests.integration.interleave import contend_for_stock

POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=10),
    confirm_timeout=timedelta(seconds=10),
    shipment_timeout=timedelta(seconds=10),
    retry_backoff=timedelta(milliseconds=50),
)
CATALOG = """mutation {
  w1: registerWarehouse(input: {code: "W1", name: "North", sections: [
    {code: "A", storageCondition: AMBIENT}, {code: "C", storageCondition: FROZEN}]}) { userErrors { code } }
  w2: registerWarehouse(input: {code: "W2", name: "South", sections: [
    {code: "A", storageCondition: AMBIENT}, {code: "R", storageCondition: REFRIGERATED}]}) {
    userErrors { code } }
  w3: registerWarehouse(input: {code: "W3", name: "Empty", sections: []}) { userErrors { code } }
  tea: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) { userErrors { code } }
  peas: registerProduct(input: {sku: "PEAS", name: "Peas", storageCondition: FROZEN}) { userErrors { code } }
  salt: registerProduct(input: {sku: "SALT", name: "Salt", storageCondition: AMBIENT}) { userErrors { code } }
  r1: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 5}) {
    userErrors { code } }
  r2: receiveStock(input: {sku: "TEA", warehouseCode: "W2", sectionCode: "A", quantity: 4}) {
    userErrors { code } }
  r3: receiveStock(input: {sku: "PEAS", warehouseCode: "W1", sectionCode: "C", quantity: 7}) {
    userErrors { code } }
}"""
WAREHOUSES = """{
  warehouses {
    code name
    sections { code storageCondition stock { sku onHand reserved available } }
  }
}"""
PRODUCTS = "{ products { sku name storageCondition onHand reserved available } }"
CONTENTION = """{ inventoryContention {
  stockReservations stockConflicts stockConflictsExhausted casConflicts casConflictsExhausted
} }"""


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    async with graphql_client(Service(Settings(database_url=database_url, policy=POLICY))) as client:
        created = await client(CATALOG)
        assert all(result["userErrors"] == [] for result in created.values())
        yield client


async def order_tea(gql: GraphQLClient, quantity: int) -> dict[str, Any]:
    placed = await gql(PLACE, input={"customerId": "c-1", "lines": [{"sku": "TEA", "quantity": quantity}]})
    return await gql.wait_for_saga(placed["placeOrder"]["saga"]["id"], "COMPLETED")


def held(sku: str, on_hand: int, reserved: int) -> dict[str, object]:
    return {"sku": sku, "onHand": on_hand, "reserved": reserved, "available": on_hand - reserved}


async def test_warehouses_show_each_section_and_the_stock_it_holds(gql: GraphQLClient) -> None:
    saga = await order_tea(gql, 6)  # neither warehouse holds 6: 5 from W1 and 1 from W2
    # One shipment per warehouse, each with that warehouse's picks.
    w1 = {"warehouseCode": "W1", "sectionCode": "A", "sku": "TEA", "quantity": 5}
    w2 = {"warehouseCode": "W2", "sectionCode": "A", "sku": "TEA", "quantity": 1}
    shipments = saga["order"]["shipments"]
    assert [(s["warehouseCode"], s["status"], s["picks"]) for s in shipments] == [
        ("W1", "CREATED", [w1]),
        ("W2", "CREATED", [w2]),
    ]
    assert saga["order"]["shipment"] == {"id": shipments[0]["id"], "picks": [w1]}  # deprecated: the first

    assert (await gql(WAREHOUSES))["warehouses"] == [
        {
            "code": "W1",
            "name": "North",
            "sections": [
                {"code": "A", "storageCondition": "AMBIENT", "stock": [held("TEA", 5, 5)]},
                {"code": "C", "storageCondition": "FROZEN", "stock": [held("PEAS", 7, 0)]},
            ],
        },
        {
            "code": "W2",
            "name": "South",
            "sections": [
                {"code": "A", "storageCondition": "AMBIENT", "stock": [held("TEA", 4, 1)]},
                {"code": "R", "storageCondition": "REFRIGERATED", "stock": []},
            ],
        },
        {"code": "W3", "name": "Empty", "sections": []},
    ]


async def test_products_show_their_stock_summed_over_every_section(gql: GraphQLClient) -> None:
    await order_tea(gql, 6)

    assert (await gql(PRODUCTS))["products"] == [
        {"name": "Peas", "storageCondition": "FROZEN", **held("PEAS", 7, 0)},
        {"name": "Salt", "storageCondition": "AMBIENT", **held("SALT", 0, 0)},
        {"name": "Tea", "storageCondition": "AMBIENT", **held("TEA", 9, 6)},
    ]


async def test_warehouses_and_products_are_read_with_one_query_each(gql: GraphQLClient) -> None:
    selects: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        answer = await gql(WAREHOUSES.replace("warehouses {", "products { sku onHand } warehouses {", 1))
    finally:
        event.remove(Engine, "before_cursor_execute", record)

    assert len(answer["warehouses"]) == 3 and len(answer["products"]) == 3
    assert len(selects) == 2, selects


async def test_inventory_contention_counts_conflicts_and_exhausted_reservations(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await gql(CONTENTION))["inventoryContention"] == {
        "stockReservations": 0,
        "stockConflicts": 0,
        "stockConflictsExhausted": 0,
        "casConflicts": 0,
        "casConflictsExhausted": 0,
    }
    # Every attempt of the first reservation finds its rows moved: it is exhausted, and the saga's
    # retry then reserves.
    contend_for_stock(monkeypatch, ["TEA"], times=RESERVE_ATTEMPTS)

    saga = await order_tea(gql, 1)

    reserve = next(s for s in saga["steps"] if s["name"] == "RESERVE_STOCK")
    assert (reserve["status"], reserve["attempts"]) == ("SUCCEEDED", 2)
    assert (await gql(CONTENTION))["inventoryContention"] == {
        "stockReservations": 2,
        "stockConflicts": RESERVE_ATTEMPTS,
        "stockConflictsExhausted": 1,
        # The deprecated names answer the same counts.
        "casConflicts": RESERVE_ATTEMPTS,
        "casConflictsExhausted": 1,
    }
