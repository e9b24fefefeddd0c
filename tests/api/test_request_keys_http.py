"""Idempotency keys of receiveStock, adjustStock and dispatchShipment over real HTTP, on each
database: the same key and request answer as the first did and change nothing more; the same key
with another request is refused; keys are each caller's own; racing duplicates take effect once."""

from __future__ import annotations

import asyncio
from typing import Any

from api.settings import Settings
from tests.api.server import GraphQLClient, place, stock
from tests.api.tokens import AUTH, Caller, bearer, served

RECEIVE = """mutation ($input: ReceiveStockInput!) {
  receiveStock(input: $input) { stockLevel { onHand } userErrors { code field } } }"""
ADJUST = """mutation ($input: AdjustStockInput!) {
  adjustStock(input: $input) { stockLevel { onHand } userErrors { code field } } }"""
DISPATCH = """mutation ($input: DispatchShipmentInput!) {
  dispatchShipment(input: $input) { shipment { id status } order { status } userErrors { code field } } }"""
LEVELS = '{ stockLevels(sku: "TEA") { onHand reserved } }'
MOVEMENTS = '{ stockMovements(sku: "TEA", first: 50) { edges { node { kind onHandChange } } } }'
SECTION = {"sku": "TEA", "warehouseCode": "W1", "sectionCode": "A"}
REUSED = [{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}]


async def movements(gql: GraphQLClient) -> list[tuple[str, int]]:
    edges = (await gql(MOVEMENTS))["stockMovements"]["edges"]
    return sorted((e["node"]["kind"], e["node"]["onHandChange"]) for e in edges)


async def test_a_receipt_sent_again_under_its_key_is_received_once(gql: GraphQLClient) -> None:
    receipt = {**SECTION, "quantity": 3, "idempotencyKey": "delivery-17"}

    first = (await gql(RECEIVE, input=receipt))["receiveStock"]
    again = (await gql(RECEIVE, input=receipt))["receiveStock"]
    other = (await gql(RECEIVE, input={**receipt, "quantity": 4}))["receiveStock"]

    assert first == again == {"stockLevel": {"onHand": 8}, "userErrors": []}
    assert other == {"stockLevel": None, "userErrors": REUSED}
    assert (await gql(LEVELS))["stockLevels"] == [{"onHand": 8, "reserved": 0}]
    assert await movements(gql) == [("RECEIPT", 3), ("RECEIPT", 5)]


async def test_an_adjustment_sent_again_under_its_key_is_made_once(gql: GraphQLClient) -> None:
    adjustment = {**SECTION, "quantityDelta": -2, "reason": "damaged", "idempotencyKey": "count-3"}

    first = (await gql(ADJUST, input=adjustment))["adjustStock"]
    again = (await gql(ADJUST, input=adjustment))["adjustStock"]
    # The key is bound to the adjustment: another operation under it is another request.
    receipt = await gql(RECEIVE, input={**SECTION, "quantity": 2, "idempotencyKey": "count-3"})

    assert first == again == {"stockLevel": {"onHand": 3}, "userErrors": []}
    assert receipt["receiveStock"] == {"stockLevel": None, "userErrors": REUSED}
    assert await movements(gql) == [("ADJUSTMENT", -2), ("RECEIPT", 5)]


async def test_a_refused_request_binds_no_key(gql: GraphQLClient) -> None:
    too_much = {**SECTION, "quantityDelta": -6, "reason": "lost", "idempotencyKey": "k"}
    refused = (await gql(ADJUST, input=too_much))["adjustStock"]
    made = (await gql(ADJUST, input={**too_much, "quantityDelta": -1}))["adjustStock"]

    assert refused["userErrors"] == [{"code": "BELOW_RESERVED", "field": "quantityDelta"}]
    assert made == {"stockLevel": {"onHand": 4}, "userErrors": []}


async def test_a_dispatch_sent_again_under_its_key_answers_the_dispatched_shipment(
    gql: GraphQLClient,
) -> None:
    first_order, second_order = await place(gql, 2), await place(gql, 1)
    await gql.wait_for_saga(first_order["saga"]["id"], "COMPLETED")
    await gql.wait_for_saga(second_order["saga"]["id"], "COMPLETED")
    shipments = {}
    for placed in (first_order, second_order):
        order = await gql("query ($id: ID!) { order(id: $id) { shipment { id } } }", id=placed["order"]["id"])
        shipments[placed["order"]["id"]] = order["order"]["shipment"]["id"]
    shipment_id, other_id = shipments[first_order["order"]["id"]], shipments[second_order["order"]["id"]]
    dispatch = {"shipmentId": shipment_id, "idempotencyKey": "truck-9"}

    first = (await gql(DISPATCH, input=dispatch))["dispatchShipment"]
    again = (await gql(DISPATCH, input=dispatch))["dispatchShipment"]
    other = await gql(DISPATCH, input={"shipmentId": other_id, "idempotencyKey": "truck-9"})

    shipped = {"shipment": {"id": shipment_id, "status": "DISPATCHED"}, "order": {"status": "SHIPPED"}}
    assert first == again == {**shipped, "userErrors": []}
    assert other["dispatchShipment"] == {"shipment": None, "order": None, "userErrors": REUSED}
    assert (await gql(LEVELS))["stockLevels"] == [{"onHand": 3, "reserved": 1}]


async def test_racing_duplicates_under_a_new_key_adjust_once(gql: GraphQLClient) -> None:
    adjustment = {**SECTION, "quantityDelta": 1, "reason": "found", "idempotencyKey": "found-1"}

    answers = await asyncio.gather(*(gql(ADJUST, input=adjustment) for _ in range(6)))

    assert {a["adjustStock"]["userErrors"] == [] for a in answers} == {True}
    assert (await gql(LEVELS))["stockLevels"] == [{"onHand": 6, "reserved": 0}]
    assert await movements(gql) == [("ADJUSTMENT", 1), ("RECEIPT", 5)]


async def test_each_caller_has_keys_of_its_own(database_url: str) -> None:
    async with served(Settings(database_url=database_url, auth=AUTH)) as server:
        first, second = (Caller(server.http, bearer(who, "admin")) for who in ("admin-1", "admin-2"))
        await stock(_Data(first))
        receipt = {**SECTION, "quantity": 1, "idempotencyKey": "same-key"}

        answers = [await first.data(RECEIVE, input=receipt), await second.data(RECEIVE, input=receipt)]

        assert [a["receiveStock"]["stockLevel"] for a in answers] == [{"onHand": 6}, {"onHand": 7}]


class _Data(GraphQLClient):
    """A caller with a token, as the GraphQLClient that `stock` takes."""

    def __init__(self, caller: Caller) -> None:
        super().__init__(caller.http)
        self._caller = caller

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        return await self._caller.data(query, **variables)
