"""Contention on stock rows over real HTTP, on PostgreSQL (SQLite has one writer and no row locks):
a write that waits for a lock past the lock timeout is run again, and answered SERVICE_UNAVAILABLE
(never a masked internal error) once its attempts run out; stock writes of every kind, sent at
once over several SKUs in opposite orders, all go through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.graphql.edge.errors import BUSY_MESSAGE, RETRY_AFTER_SECONDS
from api.service import Service
from api.settings import Settings
from persistence.database import make_engine
from persistence.write.group_commit import CONTENTION_ATTEMPTS
from tests.api.server import TLS, GraphQLClient, serve
from tests.integration.support import FAST
from tests.polling import eventually

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

ADJUST = """mutation ($delta: Int!) {
  adjustStock(input: {sku: "S1", warehouseCode: "W1", sectionCode: "A", quantityDelta: $delta,
    reason: "count"}) { stockLevel { onHand } userErrors { code } } }"""
SKUS = ["S1", "S2", "S3", "S4"]


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[Service, GraphQLClient]]:
    """A served instance with products S1..S4, 100 of each in W1/A."""
    svc = Service(Settings(database_url=database_url, policy=FAST))
    async with serve(svc) as url, httpx.AsyncClient(base_url=url, timeout=30, verify=TLS) as http:
        gql = GraphQLClient(http)
        await gql(
            'mutation { registerWarehouse(input: {code: "W1", name: "One", sections: '
            '[{code: "A", storageCondition: AMBIENT}]}) { userErrors { code } } }'
        )
        for sku in SKUS:
            await gql(
                """mutation ($sku: String!) {
                  registerProduct(input: {sku: $sku, name: $sku, storageCondition: AMBIENT}) {
                    userErrors { code } }
                  receiveStock(input: {sku: $sku, warehouseCode: "W1", sectionCode: "A", quantity: 100}) {
                    userErrors { code } } }""",
                sku=sku,
            )
        yield svc, gql


@contextlib.asynccontextmanager
async def stock_table_locked(database_url: str) -> AsyncIterator[Any]:
    """The whole stock table locked by another session until the block ends (or is released)."""
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(text("LOCK TABLE stock IN ACCESS EXCLUSIVE MODE"))
            yield transaction
            if transaction.is_active:
                await transaction.rollback()
    finally:
        await engine.dispose()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow  # every retry waits out the lock timeout
async def test_a_write_that_never_gets_its_lock_is_told_to_retry(
    served: tuple[Service, GraphQLClient], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    svc, gql = served
    async with stock_table_locked(database_url):
        response = await gql.http.post("/graphql", json={"query": ADJUST, "variables": {"delta": 1}})

    (error,) = response.json()["errors"]
    assert error["message"] == BUSY_MESSAGE
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": RETRY_AFTER_SECONDS}
    assert svc.metrics.contention_retries == CONTENTION_ATTEMPTS - 1
    assert errors_logged(caplog) == []
    levels = await gql('{ stockLevels(sku: "S1") { onHand } }')
    assert levels == {"stockLevels": [{"onHand": 100}]}


async def test_a_read_held_by_a_table_lock_is_told_to_retry_and_others_are_answered(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, policy=FAST, pool_timeout=timedelta(milliseconds=300))
    async with (
        serve(Service(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30, verify=TLS) as http,
    ):
        gql = GraphQLClient(http)
        async with stock_table_locked(database_url):
            stock_read = await http.post("/graphql", json={"query": '{ stockLevels(sku: "S1") { onHand } }'})
            other_read = await gql("{ orders { edges { node { id } } } }")
        (error,) = stock_read.json()["errors"]
        assert error["extensions"] == {
            "code": "SERVICE_UNAVAILABLE",
            "retryAfterSeconds": RETRY_AFTER_SECONDS,
        }
        assert other_read == {"orders": {"edges": []}}
        assert await gql('{ stockLevels(sku: "S1") { onHand } }') == {"stockLevels": []}


async def test_a_write_whose_lock_is_freed_between_attempts_goes_through_once(
    served: tuple[Service, GraphQLClient], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    svc, gql = served
    async with stock_table_locked(database_url) as lock:
        adjusting = asyncio.create_task(gql(ADJUST, delta=-1))
        await eventually(lambda: svc.metrics.contention_retries == 1, "the first attempt to time out")
        await lock.rollback()
        answer = await adjusting

    assert answer["adjustStock"] == {"stockLevel": {"onHand": 99}, "userErrors": []}
    assert errors_logged(caplog) == []


async def test_stock_writes_of_every_kind_over_skus_in_opposite_orders_all_go_through(
    served: tuple[Service, GraphQLClient], caplog: pytest.LogCaptureFixture
) -> None:
    _, gql = served
    bodies: list[dict[str, Any]] = []

    async def send(query: str, **variables: Any) -> dict[str, Any]:
        response = await gql.http.post("/graphql", json={"query": query, "variables": variables})
        bodies.append(response.json())
        return bodies[-1]

    async def administer(skus: list[str]) -> None:
        for sku in skus:
            await send(
                """mutation ($sku: String!) {
                  r: receiveStock(input: {sku: $sku, warehouseCode: "W1", sectionCode: "A", quantity: 2}) {
                    userErrors { code } }
                  a: adjustStock(input: {sku: $sku, warehouseCode: "W1", sectionCode: "A",
                    quantityDelta: -1, reason: "count"}) { userErrors { code } } }""",
                sku=sku,
            )

    async def order_and_dispatch(skus: list[str]) -> None:
        lines = [{"sku": sku, "quantity": 1} for sku in skus]
        placed = await send(
            """mutation ($lines: [OrderLineInput!]!) {
              placeOrder(input: {customerId: "c", lines: $lines, awaitOutcomeMs: 10000}) {
                order { status shipment { id } } saga { id } userErrors { code } } }""",
            lines=lines,
        )
        answer = placed["data"]["placeOrder"]
        shipment = answer["order"]["shipment"]
        if shipment is None:  # not settled within awaitOutcomeMs on a busy machine: wait for it
            saga = await gql.wait_for_saga(answer["saga"]["id"], "COMPLETED", "FAILED")
            shipment = saga["order"]["shipment"]
        if shipment is None:  # short of stock the receipts had not yet brought: nothing to dispatch
            return
        await send(
            "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) { userErrors { code } } }",
            id=shipment["id"],
        )

    rounds = 6
    await asyncio.gather(
        *(administer(SKUS if i % 2 else SKUS[::-1]) for i in range(rounds)),
        *(order_and_dispatch(SKUS[i % 4 :] + SKUS[: i % 4]) for i in range(rounds)),
        *(order_and_dispatch(SKUS[::-1]) for _ in range(rounds)),
    )

    assert [b.get("errors") for b in bodies] == [None] * len(bodies)
    refused = [field["userErrors"] for b in bodies for field in b["data"].values() if field["userErrors"]]
    assert refused == []
    assert errors_logged(caplog) == []
    levels = await gql("{ products { sku onHand reserved } }")
    # Each SKU: 100, +1 net per administering round, -1 per order (each order takes one of each).
    expected = 100 + rounds - 2 * rounds
    assert levels["products"] == [{"sku": s, "onHand": expected, "reserved": 0} for s in SKUS]
