"""Background tasks that die are logged, restarted with growing pauses, and reported while down."""

from __future__ import annotations

import asyncio
import logging

import pytest

from api.supervision import Supervisor, stop_if_cancelled, woken
from tests.polling import eventually


async def test_a_task_that_dies_is_logged_reported_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(first_pause_s=0.2, max_pause_s=0.4)
    runs: list[int] = []
    running = asyncio.Event()

    async def listener() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise ConnectionError(f"lost it, run {len(runs)}")
        running.set()
        await asyncio.Event().wait()  # runs until cancelled

    with caplog.at_level(logging.ERROR, logger="ordersaga.supervision"):
        supervisor.keep("commit-listener", listener)
        await eventually(lambda: "commit-listener" in supervisor.down, "the death to be reported")
        assert supervisor.down["commit-listener"].reason == "ConnectionError: lost it, run 1"
        async with asyncio.timeout(5):
            await running.wait()
        assert supervisor.down == {} and len(runs) == 3
    await supervisor.stop()
    deaths = [r for r in caplog.records if r.name == "ordersaga.supervision"]
    assert [r.getMessage() for r in deaths] == ["background task commit-listener died; restarting"] * 2
    assert all(r.exc_info for r in deaths)  # with the traceback, once per death


async def test_a_task_that_returns_is_restarted_too() -> None:
    supervisor = Supervisor(first_pause_s=0.01)
    runs: list[None] = []

    async def rounds() -> None:
        runs.append(None)

    supervisor.keep("lease-rounds", rounds)
    await eventually(lambda: len(runs) >= 3, "three runs")
    await supervisor.stop()


async def test_a_wait_for_a_wake_up_says_whether_it_came() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    event.set()
    assert await woken(event, 60) is True


async def test_a_wait_for_a_wake_up_stopped_as_it_comes_stops() -> None:
    """The stop and the wake-up in one turn of the loop: asyncio.wait_for (Python 3.11) answered the
    wake-up and dropped the stop, so that the task ran on."""
    event = asyncio.Event()
    waiting = asyncio.create_task(woken(event, 60))
    await asyncio.sleep(0)  # waiting
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await waiting


async def test_a_loop_whose_stop_a_library_dropped_stops_at_its_next_turn() -> None:
    event, turns = asyncio.Event(), []

    async def loop() -> None:
        while True:
            stop_if_cancelled()
            turns.append(len(turns))
            # As a library waits (nats-py's requests): the stop, arriving as the wait ends, is dropped.
            await asyncio.wait_for(event.wait(), 60)
            event.clear()

    running = asyncio.create_task(loop())
    await eventually(lambda: turns == [0], "the first turn")
    await asyncio.sleep(0)  # in its wait
    event.set()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await running
    assert turns == [0]


async def test_a_task_slow_to_stop_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(slow_stop_s=0.05)

    async def reluctant() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(asyncio.sleep(0.2))  # its clean-up outlasts slow_stop_s

    supervisor.keep("journal-tail", reluctant)
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="ordersaga.supervision"):
        await supervisor.stop()
    assert [r.getMessage() for r in caplog.records if r.name == "ordersaga.supervision"] == [
        "background task journal-tail has not stopped 0.05s after it was asked to"
    ]
