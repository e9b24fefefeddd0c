"""The pacer of live messages: a bounded number through per turn of the event loop, first come first
served, none lost, and a wait given up passes its place on."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from api.live.pacing import Pacer


@contextmanager
def turns() -> Iterator[list[int]]:
    """A one-element list holding how many turns the event loop has made since the block began."""
    loop, count = asyncio.get_running_loop(), [0]

    def tick() -> None:
        count[0] += 1
        handle[0] = loop.call_soon(tick)

    handle = [loop.call_soon(tick)]
    try:
        yield count
    finally:
        handle[0].cancel()


async def test_at_most_per_turn_messages_go_through_in_a_turn_round_robin_and_none_is_lost() -> None:
    pacer = Pacer(per_turn=3)
    passed: list[tuple[int, int, int]] = []  # (turn, subscriber, its message)
    with turns() as turn:

        async def send(subscriber: int) -> None:
            for message in range(5):
                await pacer.turn()
                passed.append((turn[0], subscriber, message))
                await asyncio.sleep(0)  # sending it: the next subscriber asks meanwhile

        await asyncio.gather(*(send(s) for s in range(20)))

    assert len(passed) == 100
    assert max(Counter(t for t, _, _ in passed).values()) == 3
    # Every subscriber's k-th message goes before any subscriber's (k+1)-th: nobody is starved.
    assert [m for _, _, m in passed] == sorted(m for _, _, m in passed)
    assert pacer.waiting == 0


async def test_a_wait_given_up_takes_no_pass_and_those_behind_it_go_through() -> None:
    pacer = Pacer(per_turn=1)
    first, given_up, behind = (asyncio.create_task(pacer.turn()) for _ in range(3))
    await asyncio.sleep(0)
    assert first.done()  # the turn's only pass
    assert pacer.waiting == 2
    given_up.cancel()
    async with asyncio.timeout(5):
        await behind
    assert given_up.cancelled()
    assert pacer.waiting == 0


async def test_a_message_costing_more_than_a_turn_goes_alone_and_cheap_ones_share_turns() -> None:
    pacer = Pacer(per_turn=4)
    passed: list[tuple[int, str]] = []  # (turn, message)
    with turns() as turn:

        async def send(name: str, cost: int) -> None:
            await pacer.turn(cost)
            passed.append((turn[0], name))

        # Queued in this order: two costly messages between cheap ones.
        await asyncio.gather(*(send(n, c) for n, c in [("a", 1), ("B", 50), ("c", 1), ("D", 50), ("e", 1)]))

    by_turn: dict[int, list[str]] = {}
    for at, name in passed:
        by_turn.setdefault(at, []).append(name)
    # First come, first served; a costly message takes what its turn has left, so nothing goes
    # after it in that turn (at one pass each, the first four would have shared one).
    assert list(by_turn.values()) == [["a", "B"], ["c", "D"], ["e"]]
    assert pacer.waiting == 0
