"""Live messages paced so that requests keep their share of the event loop while thousands go out.

One commit wakes every subscriber that follows it; each then renders and sends a message. Unpaced,
10,000 subscribers are 10,000 pieces of work in one turn of the event loop, and asyncio runs ready
work first in, first out: a request, which needs dozens of turns (its body, each database round
trip, its answer), waits behind the whole fan-out at every one of them, and a saga's step behind it
too. Paced, `per_turn` messages go out per turn (while some wait; twice that at most as the queue
runs empty): every other subscriber waits its turn in a queue, first come, first served, so a turn
costs a few milliseconds of fan-out however many follow, and the requests and sagas ready meanwhile
run between slices. Messages are not dropped or merged:
each subscriber sends all of its own, in order, only later; one whose client does not read is
closed by its socket's send timeout (api/web/ws_session.py), not waited for here.

A message of a large selection costs more than one pass: a subscription asks for as many as the
values its answer may hold (api/graphql/edge/execution_limits.py) make of VALUES_PER_PASS. One that
costs more than a turn has left still goes, and nothing goes after it in that turn, so a hundred
subscriptions that each select thousands of values render one a turn, not twenty.
"""

from __future__ import annotations

import asyncio
from collections import deque

# Messages let through per turn of the event loop: a message costs about 0.1 ms of CPU (rendered
# once per selection, then serialised and written per socket), so a turn spends some 2 ms on the
# fan-out. Measured with 10,000 subscribers (docs/performance.md), 20 halved a request's latency
# beside the fan-out against 50; the pacing itself costs about 4 µs a message.
PER_TURN = 20
# The values of a message one pass stands for: the feed's usual selections (sequence, type, status,
# the saga's id and status) hold fewer.
VALUES_PER_PASS = 10


class Pacer:
    def __init__(self, per_turn: int = PER_TURN) -> None:
        self._per_turn = per_turn
        self._left = per_turn
        self._queue: deque[tuple[asyncio.Future[None], int]] = deque()  # and the passes it costs
        self._refill: asyncio.Handle | None = None

    @property
    def waiting(self) -> int:
        """How many messages wait for their turn."""
        return len(self._queue)

    async def turn(self, cost: int = 1) -> None:
        """Return once a message that costs `cost` passes may go out: at once while this turn of the
        event loop has passes left and nobody waits, else after those that asked earlier, in a later
        turn. One costing more than the passes left still goes when some are left, and takes them
        all."""
        if self._left > 0 and not self._queue:
            self._left -= cost
            self._schedule_refill()
            return
        waiting = asyncio.get_running_loop().create_future()
        self._queue.append((waiting, cost))
        self._schedule_refill()
        try:
            await waiting
        except asyncio.CancelledError:
            # Let through but cancelled before it ran: its passes return to this turn, for whoever
            # asks next in it; those queued get theirs at the next turn, as they would have.
            if waiting.done() and not waiting.cancelled():
                self._left += cost
                self._schedule_refill()
            raise

    def _schedule_refill(self) -> None:
        if self._refill is None:
            self._refill = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new turn: `per_turn` passes, handed first to those waiting. Scheduled with call_soon, so
        it runs once per turn of the event loop, after what became ready before it."""
        self._refill = None
        self._left = self._per_turn
        while self._left > 0 and self._queue:
            waiting, cost = self._queue.popleft()
            if not waiting.done():  # a cancelled wait takes no pass
                waiting.set_result(None)
                self._left -= cost
        if self._queue or self._left < self._per_turn:
            self._schedule_refill()
