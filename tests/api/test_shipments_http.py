"""One shipment per warehouse over real HTTP, on each database: an order picked from two warehouses
lists a shipment for each (and the deprecated `shipment` is the first); dispatching one reads
PARTIALLY_SHIPPED, and the order can no longer be cancelled; dispatching the other reads SHIPPED. A
warehouse refusing its shipment (a staged fault) cancels the other's and cancels the order, and the
refused shipment says why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.service import Service
from api.settings import Settings
from tests.api.server import PLACE, GraphQLClient, graphql_client
from tests.api.test_inventory_http import CATALOG, POLICY

ORDER = """query ($id: ID!) { order(id: $id) {
  status shippedAt
  shipment { id warehouseCode }
  shipments { id warehouseCode status dispatchedAt reason picks { warehouseCode sku quantity } }
} }"""
DISPATCH = """mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) {
  shipment { id warehouseCode status } order { status } userErrors { code }
} }"""
CANCEL = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { order { status } userErrors { code } } }"
SAGA = "query ($id: ID!) { saga(id: $id) { status failureReason } }"
FAULT = """mutation ($input: SetParticipantFaultInput!) { setParticipantFault(input: $input) {
  faults { participant rejectedWarehouses } userErrors { code field }
} }"""
FAULTS = "{ participantFaults { participant rejectedWarehouses } }"
STOCK = '{ stockLevels(sku: "TEA") { warehouseCode onHand reserved } }'


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    settings = Settings(database_url=database_url, policy=POLICY, fault_injection=True)
    async with graphql_client(Service(settings)) as client:
        created = await client(CATALOG)
        assert all(result["userErrors"] == [] for result in created.values())
        yield client


async def _order_tea(gql: GraphQLClient, settled: str) -> tuple[str, dict[str, Any]]:
    """An order of 6 TEA, 5 from W1 and 1 from W2, once its saga is `settled`."""
    placed = (await gql(PLACE, input={"customerId": "c-1", "lines": [{"sku": "TEA", "quantity": 6}]}))[
        "placeOrder"
    ]
    await gql.wait_for_saga(placed["saga"]["id"], settled)
    return placed["saga"]["id"], placed["order"] | (await gql(ORDER, id=placed["order"]["id"]))["order"]


async def test_each_warehouse_gets_its_shipment_dispatched_on_its_own(gql: GraphQLClient) -> None:
    _, order = await _order_tea(gql, "COMPLETED")
    w1, w2 = order["shipments"]
    assert [(s["warehouseCode"], s["status"], s["picks"]) for s in (w1, w2)] == [
        ("W1", "CREATED", [{"warehouseCode": "W1", "sku": "TEA", "quantity": 5}]),
        ("W2", "CREATED", [{"warehouseCode": "W2", "sku": "TEA", "quantity": 1}]),
    ]
    assert order["shipment"] == {"id": w1["id"], "warehouseCode": "W1"}

    first = (await gql(DISPATCH, id=w2["id"]))["dispatchShipment"]
    assert first == {
        "shipment": {"id": w2["id"], "warehouseCode": "W2", "status": "DISPATCHED"},
        "order": {"status": "PARTIALLY_SHIPPED"},
        "userErrors": [],
    }
    refused = (await gql(CANCEL, id=order["id"]))["cancelOrder"]
    assert refused == {"order": None, "userErrors": [{"code": "ORDER_ALREADY_SHIPPED"}]}
    assert (await gql(STOCK))["stockLevels"] == [
        {"warehouseCode": "W1", "onHand": 5, "reserved": 5},
        {"warehouseCode": "W2", "onHand": 3, "reserved": 0},
    ]

    last = (await gql(DISPATCH, id=w1["id"]))["dispatchShipment"]
    assert (last["order"], last["userErrors"]) == ({"status": "SHIPPED"}, [])
    shipped = (await gql(ORDER, id=order["id"]))["order"]
    assert [s["status"] for s in shipped["shipments"]] == ["DISPATCHED", "DISPATCHED"]
    assert shipped["shippedAt"] == max(s["dispatchedAt"] for s in shipped["shipments"])


async def test_a_warehouse_refusing_its_shipment_cancels_the_other_and_the_order(gql: GraphQLClient) -> None:
    staged = await gql(FAULT, input={"participant": "SHIPMENT", "rejectedWarehouses": ["W2"]})
    assert staged["setParticipantFault"]["faults"] == [
        {"participant": "SHIPMENT", "rejectedWarehouses": ["W2"]}
    ]

    saga_id, order = await _order_tea(gql, "FAILED")

    saga = (await gql(SAGA, id=saga_id))["saga"]
    assert saga == {"status": "FAILED", "failureReason": "warehouse W2 refused the shipment (staged fault)"}
    assert order["status"] == "CANCELLED"
    assert [(s["warehouseCode"], s["status"], s["reason"]) for s in order["shipments"]] == [
        ("W1", "CANCELLED", None),
        ("W2", "REJECTED", "warehouse W2 refused the shipment (staged fault)"),
    ]
    assert [level["reserved"] for level in (await gql(STOCK))["stockLevels"]] == [0, 0]


async def test_refusing_warehouses_is_staged_only_on_the_shipment_participant(gql: GraphQLClient) -> None:
    for fault, field in [
        ({"participant": "ORDERS", "rejectedWarehouses": ["W1"]}, "rejectedWarehouses"),
        ({"participant": "SHIPMENT", "rejectedWarehouses": [""]}, "rejectedWarehouses"),
        ({"participant": "SHIPMENT", "rejectedWarehouses": ["W" * 65]}, "rejectedWarehouses"),
    ]:
        answer = (await gql(FAULT, input=fault))["setParticipantFault"]
        assert answer == {"faults": None, "userErrors": [{"code": "OUT_OF_RANGE", "field": field}]}
    assert (await gql(FAULTS))["participantFaults"] == []


async def test_refusing_a_warehouse_that_does_not_exist_is_refused(gql: GraphQLClient) -> None:
    fault = {"participant": "SHIPMENT", "rejectedWarehouses": ["W1", "W9"]}
    answer = (await gql(FAULT, input=fault))["setParticipantFault"]
    assert answer == {
        "faults": None,
        "userErrors": [{"code": "UNKNOWN_WAREHOUSE", "field": "rejectedWarehouses[1]"}],
    }
    assert (await gql(FAULTS))["participantFaults"] == []
