"""A newcomer's walk over real HTTP, on each database: place an order, watch it complete, dispatch its
shipment, see it SHIPPED and the stock gone; a second dispatch, racing or not, and a cancellation
after dispatch are refused and change nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.server import GraphQLClient, place

SHIPMENT = "shipment { id status dispatchedAt } order { id status shippedAt updatedAt }"
DISPATCH = (
    "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) "
    f"{{ {SHIPMENT} userErrors {{ code field message }} }} }}"
)
CANCEL = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { order { status } userErrors { code } } }"
STOCK = '{ stockLevels(sku: "TEA") { onHand reserved available } }'
ORDER = "query ($id: ID!) { order(id: $id) { status shippedAt shipment { id status dispatchedAt } } }"
SHIPPED = "{ orders(first: 10, status: [SHIPPED]) { edges { node { id status } } } }"


async def _completed(gql: GraphQLClient, quantity: int) -> tuple[str, str, str]:
    """A completed order's saga, order and shipment ids."""
    placed = await place(gql, quantity)
    await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
    order = (await gql(ORDER, id=placed["order"]["id"]))["order"]
    assert order["shipment"]["status"] == "CREATED" and order["shippedAt"] is None
    return placed["saga"]["id"], placed["order"]["id"], order["shipment"]["id"]


async def test_a_dispatched_shipment_ships_its_order_and_takes_its_stock(gql: GraphQLClient) -> None:
    _, order_id, shipment_id = await _completed(gql, 2)
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 2, "available": 3}]

    answer = (await gql(DISPATCH, id=shipment_id))["dispatchShipment"]

    assert answer["userErrors"] == []
    at = answer["shipment"]["dispatchedAt"]
    assert answer["shipment"] == {"id": shipment_id, "status": "DISPATCHED", "dispatchedAt": at}
    assert answer["order"] == {"id": order_id, "status": "SHIPPED", "shippedAt": at, "updatedAt": at}
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 3, "reserved": 0, "available": 3}]
    order = (await gql(ORDER, id=order_id))["order"]
    assert order == {
        "status": "SHIPPED",
        "shippedAt": at,
        "shipment": {"id": shipment_id, "status": "DISPATCHED", "dispatchedAt": at},
    }
    assert (await gql(SHIPPED))["orders"]["edges"] == [{"node": {"id": order_id, "status": "SHIPPED"}}]


async def test_racing_dispatches_ship_once_and_a_later_cancel_is_refused(gql: GraphQLClient) -> None:
    _, order_id, shipment_id = await _completed(gql, 1)

    answers = await asyncio.gather(*(gql(DISPATCH, id=shipment_id) for _ in range(4)))

    errors = sorted(e["code"] for a in answers for e in a["dispatchShipment"]["userErrors"])
    assert errors == ["SHIPMENT_ALREADY_DISPATCHED"] * 3
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 4, "reserved": 0, "available": 4}]
    cancel = (await gql(CANCEL, id=order_id))["cancelOrder"]
    assert cancel == {"order": None, "userErrors": [{"code": "ORDER_ALREADY_SHIPPED"}]}
    assert (await gql(ORDER, id=order_id))["order"]["status"] == "SHIPPED"


async def test_a_cancelled_orders_shipment_is_not_dispatched(gql: GraphQLClient) -> None:
    saga_id, order_id, shipment_id = await _completed(gql, 2)
    assert (await gql(CANCEL, id=order_id))["cancelOrder"]["userErrors"] == []
    await gql.wait_for_saga(saga_id, "FAILED")
    assert (await gql(ORDER, id=order_id))["order"]["shipment"]["status"] == "CANCELLED"

    answer = (await gql(DISPATCH, id=shipment_id))["dispatchShipment"]

    assert answer["shipment"] is None
    assert [e["code"] for e in answer["userErrors"]] == ["ORDER_ALREADY_CANCELLED"]
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 0, "available": 5}]


@pytest.mark.parametrize(("shipment_id", "code"), [("nope", "UNKNOWN_SHIPMENT"), (" ", "REQUIRED")])
async def test_an_unknown_or_empty_shipment_id_is_refused(
    gql: GraphQLClient, shipment_id: str, code: str
) -> None:
    answer = (await gql(DISPATCH, id=shipment_id))["dispatchShipment"]
    assert answer["shipment"] is None and answer["order"] is None
    assert [(e["code"], e["field"]) for e in answer["userErrors"]] == [(code, "shipmentId")]
