"""The event stream from real `ordersaga serve` processes: one killed with SIGKILL while it publishes a
backlog, then restarted (on SQLite and PostgreSQL); and, on PostgreSQL, two processes of which one
publishes under the relay's lease until it is killed and the other takes over. Each time, every
journal event ends up in the stream exactly once, each saga's in journal order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from sqlalchemy import select

from api.settings import StreamSettings
from persistence.database import make_engine
from persistence.tables import relays
from tests.api.server import place, stock
from tests.crash.server_process import ServerProcess, ordersaga_serve
from tests.crash.test_scaleout import instance_of
from tests.crash.test_sigkill import wait_until_all_finished
from tests.integration.support import logged_events
from tests.jetstream import (
    assert_each_event_once_in_order,
    message_count,
    stored,
    wait_for_stream,
)

BACKLOG_ORDERS = 150
CONCURRENT = 15


def stream_options(stream: StreamSettings) -> tuple[str, ...]:
    return (
        f"--nats-url={stream.url}",
        f"--nats-stream={stream.stream}",
        f"--nats-subject-prefix={stream.subject_prefix}",
    )


async def place_orders(server: ServerProcess, count: int) -> None:
    """`count` orders of one item, `CONCURRENT` at a time."""
    for start in range(0, count, CONCURRENT):
        placed = await asyncio.gather(*(place(server.gql, 1) for _ in range(min(CONCURRENT, count - start))))
        assert all(p["userErrors"] == [] for p in placed)


@contextlib.asynccontextmanager
async def jetstream(stream: StreamSettings) -> AsyncIterator[JetStreamContext]:
    connection = await nats.connect(stream.url)
    try:
        yield connection.jetstream()
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def first_published(stream: StreamSettings) -> AsyncIterator[asyncio.Event]:
    """An event set as soon as the first message is published on the stream's subjects (a plain NATS
    subscription hears it as the server receives it, before the relay has its acknowledgement)."""
    heard = asyncio.Event()

    async def hear(_: Msg) -> None:
        heard.set()

    connection = await nats.connect(stream.url)
    try:
        await connection.subscribe(f"{stream.subject_prefix}.>", cb=hear)
        await connection.flush()
        yield heard
    finally:
        await connection.close()


async def relay_row(database_url: str, stream: StreamSettings) -> tuple[int, str | None]:
    """The relay's stored position and the process holding its lease."""
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            query = select(relays.c.position, relays.c.owner).where(
                relays.c.name == f"stream:{stream.stream}"
            )
            row = (await conn.execute(query)).one()
    finally:
        await engine.dispose()
    return int(row.position), row.owner


async def readyz_state(server: ServerProcess) -> str:
    answer = (await server.gql.http.get("/readyz")).json()
    return str(answer["relays"][0]["state"])


async def test_a_kill_mid_publish_then_a_restart_leaves_each_event_once_in_the_stream(
    database_url: str, stream: StreamSettings
) -> None:
    # A backlog first: orders taken while no stream was configured.
    async with ordersaga_serve(database_url) as server:
        await stock(server.gql, quantity=BACKLOG_ORDERS + 10)
        await place_orders(server, BACKLOG_ORDERS)
        await wait_until_all_finished(database_url)
    backlog = len(await logged_events(database_url))

    # The stream does not take the events yet, so the backlog waits until the server is up; then it
    # does, and the server is killed as soon as the first event is published, the rest going out.
    elsewhere = StreamConfig(name=stream.stream, subjects=[f"{stream.subject_prefix}-elsewhere.>"])
    async with jetstream(stream) as js, first_published(stream) as published:
        await js.add_stream(elsewhere)
        async with ordersaga_serve(database_url, *stream_options(stream)) as server:
            await js.update_stream(elsewhere.evolve(subjects=[f"{stream.subject_prefix}.>"]))
            async with asyncio.timeout(30):
                await published.wait()
            await server.kill()
    await wait_for_stream(stream, 1)
    position, _ = await relay_row(database_url, stream)
    assert position < await message_count(stream), "the kill came after the relay had stored its position"

    # Restarted: it publishes again from its stored position; the repeats are dropped.
    async with ordersaga_serve(database_url, *stream_options(stream)) as server:
        await place_orders(server, 5)
        await wait_until_all_finished(database_url)
        events = await logged_events(database_url)
        await wait_for_stream(stream, len(events))
    assert len(events) > backlog
    assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)


@contextlib.asynccontextmanager
async def two_processes(database_url: str, *options: str) -> AsyncIterator[list[ServerProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        servers = await asyncio.gather(
            *(stack.enter_async_context(ordersaga_serve(database_url, *options)) for _ in range(2))
        )
        yield list(servers)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_one_of_several_processes_publishes_and_another_takes_over_when_it_dies(
    database_url: str, stream: StreamSettings
) -> None:
    async with two_processes(database_url, *stream_options(stream)) as servers:
        await stock(servers[0].gql, quantity=100)
        for server in servers:
            await place_orders(server, 10)
        await wait_until_all_finished(database_url)
        await wait_for_stream(stream, len(await logged_events(database_url)))

        # One process holds the relay's lease and publishes; the other stands by.
        _, owner = await relay_row(database_url, stream)
        [publisher] = [s for s in servers if instance_of(s) == owner]
        [other] = [s for s in servers if s is not publisher]
        assert (await readyz_state(publisher), await readyz_state(other)) == ("current", "standby")

        # Killed while it has events to publish; the other takes the lease over and publishes them.
        await place_orders(publisher, 10)
        await publisher.kill()
        await place_orders(other, 10)
        await wait_until_all_finished(database_url, seconds=30)
        events = await logged_events(database_url)
        await wait_for_stream(stream, len(events), seconds=30)
        assert (await relay_row(database_url, stream))[1] == instance_of(other)
        assert await readyz_state(other) == "current"
    assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)
