"""The read engine's reads of one statement on a SQLite file (persistence/read/reader.py): one
hand-off to a thread, where a blocking twin of the engine runs the statement, bounded as the async
pool is. A pool of one connection here, so that one read held in its thread keeps every other
waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Result, event, exc, text
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.database import make_engine
from persistence.read.reader import ReadEngine

TIMEOUT_S = 0.2


@dataclass
class Held:
    """A SQL function, `held(n)`, that records `n` and waits until the test lets it answer."""

    calls: list[int] = field(default_factory=list)
    answer: threading.Event = field(default_factory=threading.Event)

    def __call__(self, n: int) -> int:
        self.calls.append(n)
        assert self.answer.wait(10), "never let answer"
        return n


@pytest.fixture
async def reads(sqlite_url: str) -> AsyncIterator[tuple[ReadEngine, Held]]:
    engine = make_engine(sqlite_url, writer=False, pool_size=1, pool_timeout=TIMEOUT_S)
    reads, held = ReadEngine(engine), Held()
    assert reads.blocking is not None

    @event.listens_for(reads.blocking, "connect")
    def define(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("held", 1, held)

    try:
        yield reads, held
    finally:
        held.answer.set()
        reads.close()
        await engine.dispose()


def holding(n: int) -> Any:
    return text(f"SELECT held({n})")


async def first_read_held(engine: ReadEngine, held: Held) -> asyncio.Task[int]:
    """`held(1)` read, running in the only thread until the test lets it answer."""
    first = asyncio.create_task(engine.read(holding(1), Result.scalar_one))
    for _ in range(500):
        if held.calls == [1]:
            return first
        await asyncio.sleep(0.01)
    raise AssertionError(f"the first read never started: {held.calls}")


async def test_a_read_that_no_thread_takes_in_time_is_withdrawn_and_told_the_pool_is_busy(
    reads: tuple[ReadEngine, Held],
) -> None:
    engine, held = reads
    first = await first_read_held(engine, held)
    with pytest.raises(exc.TimeoutError):
        await engine.read(holding(2), Result.scalar_one)
    held.answer.set()
    assert await first == 1
    assert await engine.read(holding(3), Result.scalar_one) == 3
    assert held.calls == [1, 3]  # the withdrawn read never ran


async def test_a_read_whose_caller_stops_waiting_before_it_runs_never_runs(
    reads: tuple[ReadEngine, Held],
) -> None:
    engine, held = reads
    first = await first_read_held(engine, held)
    second = asyncio.create_task(engine.read(holding(2), Result.scalar_one))
    await asyncio.sleep(TIMEOUT_S / 4)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    held.answer.set()
    assert await first == 1
    assert await engine.read(holding(3), Result.scalar_one) == 3
    assert held.calls == [1, 3]


async def test_a_read_whose_caller_stops_waiting_while_it_runs_ends_and_frees_its_thread(
    reads: tuple[ReadEngine, Held],
) -> None:
    engine, held = reads
    first = await first_read_held(engine, held)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    held.answer.set()
    assert await engine.read(holding(2), Result.scalar_one) == 2
    assert held.calls == [1, 2]


async def test_a_failed_read_raises_what_the_async_driver_raises(reads: tuple[ReadEngine, Held]) -> None:
    engine, _ = reads
    missing = text("SELECT * FROM no_such_table")
    with pytest.raises(exc.OperationalError) as through_async:
        async with engine.engine.connect() as conn:
            await conn.execute(missing)
    with pytest.raises(exc.OperationalError) as through_twin:
        await engine.read(missing, Result.all)
    assert str(through_twin.value.orig) == str(through_async.value.orig)
    assert await engine.read(text("SELECT 1"), Result.scalar_one) == 1


async def test_a_database_in_memory_is_read_on_the_async_engine() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    try:
        reads = ReadEngine(engine)
        assert reads.blocking is None
        assert await reads.read(text("SELECT 1"), Result.scalar_one) == 1
    finally:
        await engine.dispose()
