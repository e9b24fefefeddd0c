"""The journal tail's task stops when it is stopped, whatever else happens at that moment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from api.live.hub import Committed, TransitionHub
from api.live.journal_tail import JournalTail
from domain.model.saga import SagaStatus
from tests.polling import eventually


@dataclass(frozen=True)
class Logged:
    position: int
    customer_id: str | None


async def _nothing_past(position: int, limit: int, customer_id: str | None) -> list[Logged]:
    return []


async def _head() -> int:
    return 0


async def test_a_tail_stopped_as_a_commit_is_announced_stops() -> None:
    hub = TransitionHub()
    tail = JournalTail(_nothing_past, _head, hub, poll_s=60)
    running = asyncio.create_task(tail.run())
    feed = tail.follow(None)
    following = asyncio.ensure_future(anext(feed))
    await eventually(lambda: tail.reads >= 1, "the tail to read past the head")
    for _ in range(3):  # on to its wait for the next commit
        await asyncio.sleep(0)
    # The commit's alarm and the stop in one turn of the loop: the stop must not be lost to the
    # alarm (asyncio.wait_for loses it on Python 3.11), else the service's stop waits for ever.
    hub.publish(Committed("saga-1", 1, 1, SagaStatus.COMPLETED))
    running.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await running
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await feed.aclose()
