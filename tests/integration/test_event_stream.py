"""The event stream against the machine's NATS server, on SQLite and PostgreSQL, with the service in the
test's event loop: every journal event is in the stream once, as the relay sends it, each saga's in
journal order; a publish repeated after the relay lost its position is dropped by the duplicate
window; an existing stream is used as it is, and one that does not take the events holds them back
until it does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig
from sqlalchemy import select, update

from api.outbound.stream import RelayState
from api.service import Service
from api.settings import Settings, StreamSettings
from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine
from persistence.database import make_engine
from persistence.tables import relays
from tests.integration.support import FAST, TERMINAL, logged_events, stock_catalog, wait_for_status
from tests.jetstream import assert_each_event_once_in_order, stored, wait_for_stream
from tests.polling import eventually

ORDERS = 12


async def start(database_url: str, stream: StreamSettings, **settings: Any) -> Service:
    svc = Service(Settings(database_url=database_url, policy=FAST, stream=stream, **settings))
    await svc.start()
    return svc


@pytest.fixture
async def svc(database_url: str, stream: StreamSettings) -> AsyncIterator[Service]:
    service = await start(database_url, stream)
    await stock_catalog(service, quantity=ORDERS)
    yield service
    await service.stop()


async def place_orders(svc: Service, count: int) -> list[str]:
    """`count` orders at once, of 1 or 2 items (some run short of stock and compensate), until each
    saga has settled; their saga ids."""
    placed = await asyncio.gather(
        *(
            svc.orchestrator.place_order(PlaceOrder(f"c-{n}", (OrderLine("SKU-1", 1 + n % 2),)))
            for n in range(count)
        )
    )
    for order in placed:
        await wait_for_status(svc, order.saga_id, *TERMINAL)
    return [order.saga_id for order in placed]


async def test_every_journal_event_is_in_the_stream_once_in_journal_order_per_saga(
    svc: Service, database_url: str, stream: StreamSettings
) -> None:
    await place_orders(svc, ORDERS)
    events = await logged_events(database_url)
    assert len({e.saga_id for e in events}) == ORDERS
    await wait_for_stream(stream, len(events))
    await eventually(lambda: svc.stream is not None and svc.stream.position == events[-1].position, "relay")
    assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)
    assert (await svc.relays())[0].state is RelayState.CURRENT

    # The stream was made for the events: their subjects, and the duplicate window asked for.
    connection = await nats.connect(stream.url)
    try:
        config = (await connection.jetstream().stream_info(stream.stream)).config
    finally:
        await connection.close()
    assert config.subjects == [f"{stream.subject_prefix}.>"]
    assert config.duplicate_window == stream.duplicate_window.total_seconds()


async def test_events_published_again_after_the_position_was_lost_are_stored_once(
    database_url: str, stream: StreamSettings
) -> None:
    first = await start(database_url, stream)
    try:
        await stock_catalog(first)
        await place_orders(first, 4)
        await wait_for_stream(stream, len(await logged_events(database_url)))
    finally:
        await first.stop()

    # As after a kill between publishing and storing the position: the position is back at 0, so a
    # new start publishes everything again, and more events after them.
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(relays).values(position=0))
    finally:
        await engine.dispose()
    again = await start(database_url, stream)
    try:
        await place_orders(again, 3)
        events = await logged_events(database_url)
        await wait_for_stream(stream, len(events))
        last = events[-1].position
        await eventually(lambda: again.stream is not None and again.stream.position == last, "relay")
    finally:
        await again.stop()
    assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)


async def test_an_existing_stream_not_taking_the_events_holds_them_back_until_it_does(
    database_url: str, stream: StreamSettings, caplog: pytest.LogCaptureFixture
) -> None:
    connection = await nats.connect(stream.url)
    js = connection.jetstream()
    try:
        elsewhere = StreamConfig(name=stream.stream, subjects=[f"{stream.subject_prefix}-elsewhere.>"])
        await js.add_stream(elsewhere)
        svc = await start(database_url, stream)
        try:
            await stock_catalog(svc)
            await place_orders(svc, 2)
            waiting = len(await logged_events(database_url))
            relay = svc.stream
            assert relay is not None
            await eventually(lambda: relay.state is RelayState.BEHIND, "the relay to fall behind")
            status = await svc.relays()
            assert [(s.state, s.waiting) for s in status] == [(RelayState.BEHIND, waiting)]
            assert await stored(stream) == []

            # The operator adds the subjects: the waiting events go out, without a restart.
            subjects = [*(elsewhere.subjects or []), f"{stream.subject_prefix}.>"]
            await js.update_stream(elsewhere.evolve(subjects=subjects))
            await wait_for_stream(stream, waiting, seconds=60)
        finally:
            await svc.stop()
    finally:
        await connection.close()
    assert_each_event_once_in_order(
        await stored(stream), await logged_events(database_url), stream.subject_prefix
    )
    # The stream was made with NATS's default window, shorter than the one configured: said once taken.
    assert any("duplicate window is 120s, shorter than the 300s" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_process_stopping_hands_the_stream_to_another(
    database_url: str, stream: StreamSettings
) -> None:
    # A short lease time: the one left looks for the lease every half second.
    lease = {"lease_ttl": timedelta(seconds=1.5)}
    first = await start(database_url, stream, instance="first", **lease)
    second = await start(database_url, stream, instance="second", **lease)
    running = [first, second]
    try:
        await stock_catalog(first)
        await place_orders(first, 2)
        await wait_for_stream(stream, len(await logged_events(database_url)))
        holder, other = (
            (first, second) if await owner(database_url) == first.settings.instance else (second, first)
        )
        assert [s.stream.state for s in (holder, other) if s.stream] == [
            RelayState.CURRENT,
            RelayState.STANDBY,
        ]

        running.remove(holder)
        await holder.stop()
        # Handed back, not left to expire: free, or already taken by the one left (it looks every
        # half second, which a loaded machine may let it do before this read).
        assert await owner(database_url) in (None, other.settings.instance)
        await place_orders(other, 2)
        events = await logged_events(database_url)
        await wait_for_stream(stream, len(events))
        assert await owner(database_url) == other.settings.instance
    finally:
        for svc in running:
            await svc.stop()
    assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)


async def owner(database_url: str) -> str | None:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(relays.c.owner))).scalar_one()  # type: ignore[no-any-return]
    finally:
        await engine.dispose()
