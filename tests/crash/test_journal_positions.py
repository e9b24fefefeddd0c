"""Journal positions with several real `ordersaga serve` processes writing to one PostgreSQL at once:
a reader that follows along, asking each time for what is past the last cursor it saw, sees every
event exactly once, in commit order, while the writers race (docs/decisions/0019-journal-positions.md);
and a feed left on one process is resumed on another from its last cursor, missing nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from persistence.database import make_engine
from persistence.tables import journal
from tests.api.server import GraphQLClient, place, stock
from tests.api.subscriptions import subscriptions
from tests.crash.test_scaleout import LEASED, fleet
from tests.crash.test_sigkill import wait_until_all_finished

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

JOURNAL = """
query ($after: String) {
  journalEvents(first: 100, after: $after) { edges { cursor node { sequence saga { id } } } }
}
"""
FEED = "subscription ($after: String) { sagaFeed(after: $after) { cursor sequence saga { id } } }"
ORDERS_PER_PROCESS = 12


async def follow_journal(gql: GraphQLClient, writing: asyncio.Event) -> list[tuple[str, int]]:
    """Page `journalEvents` from the start while `writing` is set, always after the last cursor seen,
    then once more after it is cleared: the events in the order they were listed."""
    seen: list[tuple[str, int]] = []
    after = None
    while True:
        was_writing = writing.is_set()
        edges = (await gql(JOURNAL, after=after))["journalEvents"]["edges"]
        seen += [(e["node"]["saga"]["id"], e["node"]["sequence"]) for e in edges]
        after = edges[-1]["cursor"] if edges else after
        if not edges and not was_writing:
            return seen
        await asyncio.sleep(0.01)


async def journal_in_position_order(database_url: str) -> list[tuple[str, int]]:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(journal.c.saga_id, journal.c.sequence).order_by(journal.c.position)
            )
            return [(row.saga_id, row.sequence) for row in rows]
    finally:
        await engine.dispose()


@postgresql_only
async def test_a_reader_following_racing_writers_sees_every_event_once_in_commit_order(
    database_url: str,
) -> None:
    async with fleet(database_url, 3, *LEASED) as servers:
        await stock(servers[0].gql, quantity=3 * ORDERS_PER_PROCESS)
        writing = asyncio.Event()
        writing.set()
        reader = asyncio.create_task(follow_journal(servers[0].gql, writing))

        async def orders_on(server: Any) -> None:
            await asyncio.gather(*(place(server.gql, 1) for _ in range(ORDERS_PER_PROCESS)))

        await asyncio.gather(*(orders_on(server) for server in servers))
        await wait_until_all_finished(database_url, seconds=30)
        writing.clear()
        seen = await asyncio.wait_for(reader, 30)

    everything = await journal_in_position_order(database_url)
    assert len(everything) >= 3 * ORDERS_PER_PROCESS * 7
    assert seen == everything, "every event once, in position order"
    assert len(set(seen)) == len(seen)


@postgresql_only
async def test_a_feed_left_on_one_process_resumes_on_another_from_its_last_cursor(database_url: str) -> None:
    async with fleet(database_url, 2, *LEASED) as (first, second):
        await stock(first.gql, quantity=10)
        received: list[dict[str, Any]] = []
        async with subscriptions(str(first.gql.http.base_url).rstrip("/")) as client:
            await client.subscribe("feed", FEED)
            await asyncio.sleep(0.3)  # subscribed before anything is placed
            await asyncio.gather(place(first.gql, 1), place(second.gql, 1))
            for _ in range(5):
                received.append((await client.next("feed", seconds=20))["data"]["sagaFeed"])  # type: ignore[index]
        # Gone mid-saga; more orders commit on both processes meanwhile.
        await asyncio.gather(place(first.gql, 1), place(second.gql, 1))
        await wait_until_all_finished(database_url, seconds=30)
        everything = await journal_in_position_order(database_url)
        async with subscriptions(str(second.gql.http.base_url).rstrip("/")) as client:
            await client.subscribe("feed", FEED, after=received[-1]["cursor"])
            for _ in range(len(everything) - len(received)):
                received.append((await client.next("feed", seconds=20))["data"]["sagaFeed"])  # type: ignore[index]

    assert [(u["saga"]["id"], u["sequence"]) for u in received] == everything
