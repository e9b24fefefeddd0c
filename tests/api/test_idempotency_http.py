"""placeOrder's idempotency key under racing duplicates over real HTTP, on each database: requests
that arrive together with a key nobody used yet commit one order, and every one of them answers it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.service import Service
from api.settings import Settings
from tests.api.server import PLACE, TLS, GraphQLClient, serve, stock

ROUNDS = 30
DUPLICATES = 6


@pytest.fixture
async def http(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    svc = Service(Settings(database_url=database_url))
    async with serve(svc) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as client:
        await stock(GraphQLClient(client), quantity=ROUNDS)
        yield client


async def test_racing_duplicates_with_a_new_key_all_answer_the_one_order(http: httpx.AsyncClient) -> None:
    order = {"customerId": "c", "lines": [{"sku": "TEA", "quantity": 1}]}

    async def send(key: str) -> dict[str, object]:
        response = await http.post(
            "/graphql", json={"query": PLACE, "variables": {"input": {**order, "idempotencyKey": key}}}
        )
        return response.json()  # type: ignore[no-any-return]

    sagas = []
    for round_ in range(ROUNDS):
        answers = await asyncio.gather(*(send(f"key-{round_}") for _ in range(DUPLICATES)))
        assert [a.get("errors") for a in answers] == [None] * DUPLICATES
        [saga_id] = {a["data"]["placeOrder"]["saga"]["id"] for a in answers}  # type: ignore[index]
        sagas.append(saga_id)

    gql = GraphQLClient(http)
    for saga_id in sagas:
        await gql.wait_for_saga(saga_id, "COMPLETED")

    levels = (await gql('{ stockLevels(sku: "TEA") { onHand reserved } }'))["stockLevels"]
    assert levels == [{"onHand": ROUNDS, "reserved": ROUNDS}]  # one order per key, none more
