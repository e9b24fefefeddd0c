"""The relays' loop (api/outbound/relaying.py) with a scripted sink: the position stored is the one the
sink settled, also when a batch failed part way, and the next round goes on from there; a failed
round leaves the relay behind until one succeeds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from api.live.hub import TransitionHub
from api.outbound import relaying
from api.outbound.relaying import PartlyDelivered, RelayDriver, RelayState
from persistence.connection import EngineWriter
from persistence.database import make_engine
from persistence.fleet.relays import Relays
from persistence.read.event_log import LoggedEvent
from persistence.read.reader import ReadEngine
from persistence.tables import relays
from tests.polling import eventually

JOURNAL = [
    LoggedEvent(
        n,
        f"saga-{n}",
        f"order-{n}",
        "c",
        1,
        "SagaStarted",
        "ORDER_CREATED",
        None,
        None,
        None,
        datetime.now(UTC),
    )
    for n in range(1, 6)
]


async def journal_after(_: ReadEngine, position: int, limit: int) -> list[LoggedEvent]:
    return [event for event in JOURNAL if event.position > position][:limit]


class Sink:
    """Fails its first batch after settling events up to position 2; takes every later one."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[int]]] = []
        self.closed = 0

    async def deliver(self, events: Sequence[LoggedEvent], since: int) -> int:
        self.batches.append((since, [event.position for event in events]))
        if len(self.batches) == 1:
            raise PartlyDelivered(2) from ConnectionResetError("the receiver went away")
        return events[-1].position if events else since

    async def close(self) -> None:
        self.closed += 1


async def test_a_batch_that_failed_part_way_stores_what_was_settled_and_goes_on_from_there(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relaying, "events_after", journal_after)
    engine = make_engine(sqlite_url)
    sink = Sink()
    driver = RelayDriver(
        "test:relay",
        sink,
        relays=Relays(EngineWriter(engine)),
        reads=ReadEngine(engine),
        hub=TransitionHub(),
        batch=10,
        poll_s=0.05,
        lease_ttl=None,
        opens_row=True,
    )
    running = asyncio.create_task(driver.run())
    try:
        await eventually(lambda: len(sink.batches) >= 1, "the first batch")
        await eventually(lambda: driver.state is RelayState.BEHIND, "the relay to be behind")
        assert sink.closed >= 1  # a failed round lets go of its connections
        await eventually(lambda: len(sink.batches) >= 2, "the round after the failure")
        assert sink.batches[:2] == [(0, [1, 2, 3, 4, 5]), (2, [3, 4, 5])]
        await eventually(lambda: driver.state is RelayState.CURRENT, "the relay to be current")
        async with engine.connect() as conn:
            stored = (
                await conn.execute(select(relays.c.position).where(relays.c.name == "test:relay"))
            ).scalar()
        assert stored == driver.position == 5
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await engine.dispose()
