"""Writes whose commit loses its answer, over real HTTP on PostgreSQL: the commit takes effect, and
the serving backend is terminated (pg_terminate_backend) before the answer is read, as staged by
loseCommitAnswers. Such a write is never answered "send it again": without an idempotency key it is
OUTCOME_UNKNOWN; with one, the service finds the outcome out under the key, and answers that."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.graphql.edge.errors import UNKNOWN_OUTCOME_MESSAGE
from api.service import Service
from api.settings import Settings
from tests.api.server import PLACE, TLS, GraphQLClient, serve, stock

on = {
    name: pytest.mark.parametrize("database_url", [name], indirect=True) for name in ("sqlite", "postgresql")
}

LOSE = """mutation ($count: Int!) {
  loseCommitAnswers(input: {count: $count}) { pending userErrors { code } } }"""
ADJUST = """mutation ($input: AdjustStockInput!) {
  adjustStock(input: $input) { stockLevel { onHand } userErrors { code } } }"""
ADJUSTMENT = {"sku": "TEA", "warehouseCode": "W1", "sectionCode": "A", "quantityDelta": 1, "reason": "found"}
ORDER = {"customerId": "c", "lines": [{"sku": "TEA", "quantity": 1}]}
ON_HAND = '{ stockLevels(sku: "TEA") { onHand } }'
ORDERS = "{ orders { edges { node { id status } } } }"


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    """Served with fault injection on, holding 5 TEA in W1/A. Short leases: a saga whose start lost
    its answer is driven once a lease round finds it (every third of the lease time)."""
    settings = Settings(database_url=database_url, fault_injection=True, lease_ttl=timedelta(seconds=2))
    svc = Service(settings)
    async with serve(svc) as url, httpx.AsyncClient(base_url=url, timeout=10, verify=TLS) as http:
        client = GraphQLClient(http)
        await stock(client)
        yield client


async def lost(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    """The whole answer to `query`, whose commit loses its answer."""
    assert (await gql(LOSE, count=1))["loseCommitAnswers"] == {"pending": 1, "userErrors": []}
    response = await gql.http.post("/graphql", json={"query": query, "variables": variables})
    return response.json()  # type: ignore[no-any-return]


def outcome_unknown(body: dict[str, Any]) -> bool:
    (error,) = body["errors"]
    return error == {
        "message": UNKNOWN_OUTCOME_MESSAGE,
        "locations": error["locations"],
        "path": error["path"],
        "extensions": {"code": "OUTCOME_UNKNOWN"},
    }


@on["postgresql"]
async def test_an_adjustment_whose_answer_is_lost_is_outcome_unknown_not_retry(gql: GraphQLClient) -> None:
    body = await lost(gql, ADJUST, input=ADJUSTMENT)

    assert outcome_unknown(body)
    assert (await gql(ON_HAND))["stockLevels"] == [{"onHand": 6}]  # it did take effect


@on["postgresql"]
async def test_a_keyed_adjustment_whose_answer_is_lost_is_found_out_and_made_once(gql: GraphQLClient) -> None:
    keyed = {**ADJUSTMENT, "idempotencyKey": "found-1"}

    body = await lost(gql, ADJUST, input=keyed)
    again = await gql(ADJUST, input=keyed)

    assert body == {"data": {"adjustStock": {"stockLevel": {"onHand": 6}, "userErrors": []}}}
    assert again == body["data"]
    assert (await gql(ON_HAND))["stockLevels"] == [{"onHand": 6}]


@on["postgresql"]
async def test_an_order_whose_group_commit_loses_its_answer_is_outcome_unknown(gql: GraphQLClient) -> None:
    body = await lost(gql, PLACE, input=ORDER)

    assert outcome_unknown(body)
    assert len((await gql(ORDERS))["orders"]["edges"]) == 1  # it was placed


@on["postgresql"]
async def test_a_keyed_order_whose_answer_is_lost_is_found_out_placed_once_and_driven(
    gql: GraphQLClient,
) -> None:
    keyed = {**ORDER, "idempotencyKey": "order-1"}

    body = await lost(gql, PLACE, input=keyed)
    again = (await gql(PLACE, input=keyed))["placeOrder"]

    placed = body["data"]["placeOrder"]
    assert placed["userErrors"] == [] and again["order"]["id"] == placed["order"]["id"]
    await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
    assert [e["node"]["id"] for e in (await gql(ORDERS))["orders"]["edges"]] == [placed["order"]["id"]]


@on["sqlite"]
async def test_a_lost_answer_cannot_be_staged_on_sqlite(gql: GraphQLClient) -> None:
    answer = (await gql(LOSE, count=1))["loseCommitAnswers"]
    assert answer == {"pending": None, "userErrors": [{"code": "FAULT_NOT_SUPPORTED"}]}
