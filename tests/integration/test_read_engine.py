"""The read engine's reads of one statement on a SQLite file (persistence/read/reader.py): one
hand-off to a thread, where a blocking twin of the engine runs the statement, bounded as the async
pool is. A pool of one connection here, so that one read held in its thread keeps every other
waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import Result, exc, text
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.read.reader import ReadEngine
from tests.held_reads import HeldReads
from tests.integration.support import read_engine

TIMEOUT_S = 0.2


@pytest.fixture
async def reads(sqlite_url: str) -> AsyncIterator[ReadEngine]:
    async with read_engine(sqlite_url, pool_size=1, pool_timeout=TIMEOUT_S) as reads:
        yield reads


@pytest.fixture
def held(reads: ReadEngine) -> Iterator[HeldReads]:
    held = HeldReads(reads)
    try:
        yield held
    finally:
        held.close()


async def test_a_read_that_no_thread_takes_in_time_is_withdrawn_and_told_the_pool_is_busy(
    held: HeldReads,
) -> None:
    (first,) = await held.running(1)
    with pytest.raises(exc.TimeoutError):
        await held.read(2)
    held.answer.set()
    assert await first == 1
    assert await held.read(3) == 3
    assert held.calls == [1, 3]  # the withdrawn read never ran


async def test_a_read_whose_caller_stops_waiting_before_it_runs_never_runs(
    held: HeldReads,
) -> None:
    (first,) = await held.running(1)
    second = asyncio.create_task(held.read(2))
    await asyncio.sleep(TIMEOUT_S / 4)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    held.answer.set()
    assert await first == 1
    assert await held.read(3) == 3
    assert held.calls == [1, 3]


async def test_a_read_whose_caller_stops_waiting_while_it_runs_ends_and_frees_its_thread(
    held: HeldReads,
) -> None:
    (first,) = await held.running(1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    held.answer.set()
    assert await held.read(2) == 2
    assert held.calls == [1, 2]


async def test_a_failed_read_raises_what_the_async_driver_raises(reads: ReadEngine) -> None:
    engine = reads
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


async def test_a_read_that_finds_a_thread_free_is_taken_whatever_the_time_out(sqlite_url: str) -> None:
    # The async pool, with a time-out of 0, hands out a free connection at once.
    async with read_engine(sqlite_url, pool_size=1, pool_timeout=0) as reads:
        assert reads.blocking is not None
        for n in range(50):
            assert await reads.read(text(f"SELECT {n}"), Result.scalar_one) == n


async def test_a_pool_of_no_fixed_size_is_read_on_the_async_engine(sqlite_url: str) -> None:
    async with read_engine(sqlite_url, pool_size=0) as reads:  # as many connections as asked for
        assert reads.blocking is None
        assert await reads.read(text("SELECT 1"), Result.scalar_one) == 1


async def test_closing_withdraws_the_waiting_reads_lets_the_running_one_end_and_reads_on_after(
    reads: ReadEngine, held: HeldReads
) -> None:
    (running,) = await held.running(1)
    waiting = asyncio.create_task(held.read(2))
    await asyncio.sleep(TIMEOUT_S / 4)
    closing = asyncio.create_task(reads.close())
    with pytest.raises(exc.TimeoutError):  # answered as busy: sent again, it is read
        await waiting
    await asyncio.sleep(TIMEOUT_S)
    assert not closing.done()  # the event loop went on meanwhile, while the running read went on
    held.answer.set()
    assert await running == 1
    await closing
    assert reads.blocking is None
    assert await reads.read(text("SELECT 7"), Result.scalar_one) == 7
    assert held.calls == [1]
