"""The group-commit runner when callers stop waiting: withdrawn work never runs, and a caller gone
while its batch is written leaves the runner serving everyone else. Stopped, it answers every caller
still waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from api.service import Service
from api.settings import Settings
from domain.ports import OutcomeUnknown
from persistence.connection import Db
from persistence.database import is_transient
from persistence.write.group_commit import WritersBusy


@pytest.fixture
async def svc(database_url: str) -> AsyncIterator[Service]:
    """One commit lane, so that one held write holds the whole runner."""
    service = Service(Settings(database_url=database_url, commit_lanes=1))
    await service.start()
    yield service
    await service.stop()


async def _hold_the_writer(svc: Service, seconds: float) -> asyncio.Task[str]:
    """A write that keeps the runner's lane busy for `seconds`, once it has begun."""
    began = threading.Event()

    async def hold(db: Db) -> str:
        began.set()
        await db.pause(seconds)
        return "held"

    task = asyncio.create_task(svc.write(hold))
    assert await asyncio.to_thread(began.wait, 5)  # set in the writer's thread (SQLite) or on the loop
    return task


async def test_work_whose_caller_stopped_waiting_before_its_transaction_never_runs(svc: Service) -> None:
    holding = await _hold_the_writer(svc, 0.3)
    ran = threading.Event()

    async def withdrawn(db: Db) -> None:
        ran.set()

    waiting = asyncio.create_task(svc.write(withdrawn))
    await asyncio.sleep(0.01)  # queued behind the held batch
    waiting.cancel()
    assert await holding == "held"
    assert await asyncio.wait_for(svc.write(_answer), 5) == 42
    assert not ran.is_set()


async def test_a_caller_gone_while_its_batch_is_written_leaves_the_runner_serving(svc: Service) -> None:
    holding = await _hold_the_writer(svc, 0.2)
    holding.cancel()  # mid-write: the batch commits or not, as after a crash
    await asyncio.gather(holding, return_exceptions=True)
    assert await asyncio.wait_for(svc.write(_answer), 5) == 42


async def test_a_stop_answers_the_work_being_written_as_unknown_and_the_queued_work_as_refused(
    database_url: str,
) -> None:
    service = Service(Settings(database_url=database_url, commit_lanes=1))
    await service.start()
    try:
        holding = await _hold_the_writer(service, 0.5)
        queued = asyncio.create_task(service.write(_answer))
        await asyncio.sleep(0.01)  # behind the held batch
        await service.runner.stop()  # while the batch is held (the service's own stop does more first)
    finally:
        await service.stop()
    # The held batch may yet commit (SQLite's writer thread finishes it), so its caller cannot know.
    with pytest.raises(OutcomeUnknown):
        await asyncio.wait_for(holding, 5)
    with pytest.raises(RuntimeError, match="stopped"):
        await asyncio.wait_for(queued, 5)


async def test_work_no_lane_takes_in_time_is_withdrawn_as_busy_and_never_runs(database_url: str) -> None:
    settings = Settings(database_url=database_url, commit_lanes=1, write_timeout=timedelta(seconds=0.1))
    service = Service(settings)
    await service.start()
    try:
        holding = await _hold_the_writer(service, 0.5)
        ran = threading.Event()

        async def queued(db: Db) -> None:
            ran.set()

        with pytest.raises(WritersBusy):
            await service.write(queued)
        assert await holding == "held"  # work a lane had taken is left to finish
        assert await asyncio.wait_for(service.write(_answer), 5) == 42
        assert not ran.is_set()
        assert is_transient(WritersBusy())  # so the edge answers SERVICE_UNAVAILABLE, retry later
    finally:
        await service.stop()


async def _answer(db: Db) -> int:
    return 42
