"""Thousands of `sagaFeed` subscribers being sent to leave requests their share of the server: a
query sent while the messages go out is answered with data, and every subscriber still receives
every transition, in order.

The read pool has one connection, which the queries and the feed's reads share, and a request waits
at most POOL_WAIT for it. Two queries at a time are sent until every subscriber has every message:
one holds the connection while the other waits. A fan-out that sent to every subscriber (4,000
here, 50 to each of 80 sockets) in one turn of the event loop would hold the loop for seconds at
each commit, the connection's holder could not give it back meanwhile, and the query waiting for it
would be told SERVICE_UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest

from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine
from tests.api.live import serve_live
from tests.api.subscriptions import SubscriptionClient, subscriptions

# 4,000 subscriptions, 56,000 messages. Not marked to run among the first: it asks for answers in
# time, which the busiest minutes of a run make hardest.
pytestmark = pytest.mark.slow

SOCKETS, PER_SOCKET, ORDERS = 80, 50, 2
FEED = "subscription { sagaFeed { sequence status saga { id } } }"
EVENTS = "query ($id: ID!) { saga(id: $id) { events { sequence } } }"
TERMINAL = {"COMPLETED", "FAILED"}
POOL_WAIT = timedelta(seconds=2)
# Queries sent at once, so that some wait for the pool's one connection.
AT_ONCE = 2


class Feeds:
    """What each subscription of each socket received: per saga, the sequences in arrival order."""

    def __init__(self) -> None:
        self.received: dict[tuple[int, str], dict[str, list[int]]] = {}
        self.ended: dict[tuple[int, str], set[str]] = {}
        self.arrived = asyncio.Event()  # set at the first message

    async def read(self, socket_number: int, client: SubscriptionClient) -> None:
        async for frame in client.socket:
            message = json.loads(frame)
            assert message["type"] == "next" and "errors" not in message["payload"], message
            update = message["payload"]["data"]["sagaFeed"]
            key = (socket_number, message["id"])
            saga_id = update["saga"]["id"]
            self.received.setdefault(key, {}).setdefault(saga_id, []).append(update["sequence"])
            if update["status"] in TERMINAL:
                self.ended.setdefault(key, set()).add(saga_id)
            self.arrived.set()

    def all_ended(self, saga_ids: set[str]) -> bool:
        return len(self.ended) == SOCKETS * PER_SOCKET and all(
            ended >= saga_ids for ended in self.ended.values()
        )


# The pacing is the event loop's, whatever the database: SQLite alone, as the test costs seconds.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_query_sent_while_thousands_of_subscribers_are_sent_to_is_answered(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, read_pool_size=1, pool_timeout=POOL_WAIT)
    feeds = Feeds()
    async with serve_live(settings) as live, contextlib.AsyncExitStack() as sockets:
        clients = [await sockets.enter_async_context(subscriptions(live.url)) for _ in range(SOCKETS)]
        for client in clients:
            for n in range(PER_SOCKET):
                await client.subscribe(f"feed-{n}", FEED)
        await live.until_subscribed(SOCKETS * PER_SOCKET)
        reading = [asyncio.create_task(feeds.read(n, client)) for n, client in enumerate(clients)]
        try:
            async with asyncio.timeout(120):
                orders = [PlaceOrder(f"c-{n}", (OrderLine("TEA", 1),)) for n in range(ORDERS)]
                placed = {(await live.svc.orchestrator.place_order(order)).saga_id for order in orders}
                await feeds.arrived.wait()
                answers: list[dict[str, Any]] = []
                while not feeds.all_ended(placed):  # the fan-out is under way
                    for task in reading:
                        if task.done():
                            task.result()  # a feed that failed, or a socket that closed
                    query = {"query": EVENTS, "variables": {"id": min(placed)}}
                    asked = [live.gql.http.post("/graphql", json=query) for _ in range(AT_ONCE)]
                    answers += [response.json() for response in await asyncio.gather(*asked)]
        finally:
            for task in reading:
                task.cancel()
            await asyncio.gather(*reading, return_exceptions=True)
    assert answers
    assert all("errors" not in answer and answer["data"]["saga"]["events"] for answer in answers), [
        answer["errors"] for answer in answers if "errors" in answer
    ][:1]
    for sagas in feeds.received.values():
        assert set(sagas) == placed
        assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in sagas.values())
