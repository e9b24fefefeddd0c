"""More concurrent work than the database pool holds: requests wait a bounded time, then are told to
retry; subscriptions ride out the wait and keep their stream. A read pool of one connection, held by
the test, stands for a pool that load has used up; a role allowed no more connections, for a
PostgreSQL server at its connection limit."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from api.graphql.edge.errors import (
    ANSWER_LOST_MESSAGE,
    BUSY_MESSAGE,
    EARLIER_FIELDS_MESSAGE,
    RETRY_AFTER_SECONDS,
)
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant
from domain.model.values import OrderLine
from persistence.connection import Db
from tests.api.live import Live, serve_live
from tests.api.subscriptions import subscriptions
from tests.conftest import POSTGRES_ENV, execute_sql

WAIT = timedelta(milliseconds=300)
pytestmark = pytest.mark.slow  # each waits out real timeouts, some several times WAIT


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Live]:
    settings = Settings(database_url=database_url, read_pool_size=1, pool_timeout=WAIT)
    async with serve_live(settings) as served:
        yield served


async def test_a_request_that_finds_no_connection_in_time_is_told_to_retry(live: Live) -> None:
    async with live.read_pool_used_up():  # the pool's only connection
        response = await live.gql.http.post("/graphql", json={"query": "{ products { sku } }"})
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert error["message"] == BUSY_MESSAGE
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": RETRY_AFTER_SECONDS}
    assert await live.gql("{ products { sku } }") == {"products": [{"sku": "TEA"}]}


async def test_the_saga_feed_rides_out_a_pool_with_no_connection_free(live: Live) -> None:
    async with subscriptions(live.url) as ws:
        await ws.subscribe("feed", "subscription { sagaFeed { sequence status saga { id } } }")
        await live.until_subscribed(1)
        async with live.read_pool_used_up():
            placed = await live.svc.orchestrator.place_order(PlaceOrder("c", (OrderLine("TEA", 1),)))
            await asyncio.sleep(4 * WAIT.total_seconds())  # the feed's reads time out meanwhile
        updates = [await ws.next("feed") for _ in range(7)]
    assert all(u is not None and "errors" not in u for u in updates), updates
    feed = [u["data"]["sagaFeed"] for u in updates if u is not None]
    assert [u["sequence"] for u in feed] == list(range(1, 8))
    assert feed[-1]["status"] == "COMPLETED"
    assert {u["saga"]["id"] for u in feed} == {placed.saga_id}


async def test_an_order_that_no_commit_lane_takes_in_time_is_told_to_retry_and_is_not_placed(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, commit_lanes=1, write_timeout=WAIT)
    async with serve_live(settings) as live:
        began = threading.Event()

        async def hold(db: Db) -> None:  # the only commit lane, busy past the write timeout
            began.set()
            await db.pause(4 * WAIT.total_seconds())

        holding = asyncio.create_task(live.svc.write(hold))
        assert await asyncio.to_thread(began.wait, 5)
        place = (
            'mutation { placeOrder(input: {customerId: "c", lines: [{sku: "TEA", quantity: 1}]}) '
            "{ order { id } } }"
        )
        response = await live.gql.http.post("/graphql", json={"query": place})
        await holding
        (error,) = response.json()["errors"]
        busy = {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": RETRY_AFTER_SECONDS}
        assert error["extensions"] == busy
        assert await live.gql("{ orders { edges { node { id } } } }") == {"orders": {"edges": []}}


# Changes whose answer is read in their own transaction, with the stock row at 5 before each.
CHANGES = {
    "adjustStock": """mutation { adjustStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A",
        quantityDelta: 1, reason: "found one"}) { stockLevel { onHand } userErrors { code } } }""",
    "receiveStock": """mutation { receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A",
        quantity: 1}) { stockLevel { onHand } userErrors { code } } }""",
}


@pytest.mark.parametrize("mutation", sorted(CHANGES))
async def test_a_stock_change_made_while_no_read_connection_is_free_answers_the_level_it_left(
    live: Live, mutation: str
) -> None:
    # Read after the commit, the answer waited out the pool and said "busy, send it again" for a change
    # that was made: sent again, it was made twice.
    async with live.read_pool_used_up():
        answer = await live.gql(CHANGES[mutation])
    assert answer == {mutation: {"stockLevel": {"onHand": 6}, "userErrors": []}}
    assert await live.gql('{ stockLevels(sku: "TEA") { onHand } }') == {"stockLevels": [{"onHand": 6}]}


async def test_a_mutation_field_found_busy_after_others_ran_is_answered_as_unknown(live: Live) -> None:
    # Answered "busy, send it again", the request sent again received the stock twice: the fields of a
    # mutation run one after the other, and the first had made its change.
    receive = """a: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 1}) {
        stockLevel { onHand } }"""
    order = """b: placeOrder(input: {customerId: "c", lines: [{sku: "NEVER-ASKED", quantity: 1}]}) {
        userErrors { code } }"""
    answers = {}
    for document in (f"mutation {{ {receive} {order} }}", f"mutation {{ {order} }}"):
        async with live.read_pool_used_up():  # whether NEVER-ASKED exists needs it
            response = await live.gql.http.post("/graphql", json={"query": document})
        (error,) = response.json()["errors"]
        assert error["path"] == ["b"]
        answers[document] = (error["message"], error["extensions"])
    after_receiving, alone = answers.values()
    assert after_receiving == (EARLIER_FIELDS_MESSAGE, {"code": "OUTCOME_UNKNOWN"})
    assert alone == (BUSY_MESSAGE, {"code": "SERVICE_UNAVAILABLE", "retryAfterSeconds": RETRY_AFTER_SECONDS})
    assert await live.gql('{ stockLevels(sku: "TEA") { onHand } }') == {"stockLevels": [{"onHand": 6}]}


async def test_a_warehouse_changed_while_no_read_connection_is_free_answers_it_changed(live: Live) -> None:
    rename = """mutation { updateWarehouse(input: {code: "W1", name: "Renamed"}) {
        warehouse { code name sections { code } } userErrors { code } } }"""
    async with live.read_pool_used_up():
        answer = await live.gql(rename)
    renamed = {"code": "W1", "name": "Renamed", "sections": [{"code": "A"}]}
    assert answer == {"updateWarehouse": {"warehouse": renamed, "userErrors": []}}


async def test_an_order_placed_whose_answer_cannot_be_read_is_answered_as_made_not_as_busy(
    live: Live,
) -> None:
    place = """mutation { placeOrder(input: {customerId: "c", lines: [{sku: "TEA", quantity: 1}]}) {
        saga { id events { sequence } } } }"""
    await live.gql(place)  # TEA is known from now on: placing asks the read pool nothing more
    async with live.read_pool_used_up():  # the saga's events, asked for below it, need it
        response = await live.gql.http.post("/graphql", json={"query": place})
    (error,) = response.json()["errors"]
    assert error["message"] == ANSWER_LOST_MESSAGE
    assert error["extensions"] == {"code": "OUTCOME_UNKNOWN"}
    assert error["path"][:2] == ["placeOrder", "saga"]
    orders = await live.gql("{ orders { edges { node { id } } } }")
    assert len(orders["orders"]["edges"]) == 2


async def test_an_order_whose_wait_ran_out_and_whose_answer_cannot_be_read_is_answered_as_placed(
    live: Live,
) -> None:
    place = """mutation { placeOrder(input: {customerId: "c", lines: [{sku: "TEA", quantity: 1}],
        awaitOutcomeMs: 100}) { order { id } saga { id status } } }"""
    await live.gql(place)  # TEA is known from now on: placing asks the read pool nothing more
    live.gate.hold(Participant.INVENTORY)  # the saga does not settle within the wait
    async with live.read_pool_used_up():  # and the saga cannot be read as it stands after it
        answer = await live.gql(place)
    live.gate.release(Participant.INVENTORY)
    placed = answer["placeOrder"]
    assert placed["saga"]["status"] == "STOCK_RESERVING"  # as the placement committed it
    orders = await live.gql("{ orders { edges { node { id } } } }")
    assert placed["order"]["id"] in {edge["node"]["id"] for edge in orders["orders"]["edges"]}
    assert len(orders["orders"]["edges"]) == 2


async def _as_admin(statement: str) -> None:
    await execute_sql(os.environ[POSTGRES_ENV], statement, isolation_level="AUTOCOMMIT")


@pytest.fixture
async def own_role_database(postgres_url: str) -> AsyncIterator[tuple[str, str]]:
    """A PostgreSQL database owned by a role of its own, not a superuser (whom connection limits do
    not bind): its URL, and the role."""
    name = f"ordersaga_limited_{uuid.uuid4().hex[:10]}"
    await _as_admin(f'CREATE ROLE "{name}" LOGIN')
    await _as_admin(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        yield make_url(postgres_url).set(database=name, username=name).render_as_string(False), name
    finally:
        await _as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await _as_admin(f'DROP ROLE IF EXISTS "{name}"')


async def test_a_server_that_refuses_new_connections_is_answered_as_busy(
    own_role_database: tuple[str, str],
) -> None:
    # PostgreSQL refuses a connection past max_connections, or past a role's or a database's limit,
    # with SQLSTATE 53300: the server is full for now, which the client should retry, not report.
    url, role = own_role_database
    async with serve_live(Settings(database_url=url)) as live:
        await _as_admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')  # those open stay; no new one
        try:
            # A new pool, so that every read needs a new connection. The old one's connections are
            # left open, not closed: a connection closed cleanly would be kept by the tests' warm
            # backends (tests/warm_backends.py) and handed to the next connect.
            await live.svc.read.engine.dispose(close=False)
            queries = ["{ products { sku } }", '{ saga(id: "unknown") { status } }']
            responses = await asyncio.gather(
                *(live.gql.http.post("/graphql", json={"query": query}) for query in queries * 5)
            )
        finally:
            await _as_admin(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
    for response in responses:
        assert response.status_code == 200
        (error,) = response.json()["errors"]
        assert error["message"] == BUSY_MESSAGE
        assert error["extensions"] == {
            "code": "SERVICE_UNAVAILABLE",
            "retryAfterSeconds": RETRY_AFTER_SECONDS,
        }
