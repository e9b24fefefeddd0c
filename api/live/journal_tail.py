"""The journal's newest events, read once per process for every subscriber that follows the whole
journal (`sagaFeed`).

Journal positions become visible in order (docs/decisions/0019-journal-positions.md), so a follower
that asks again and again for what is past the last position it saw never misses an event and never
sees one twice. The tail makes that cheap for many followers: while any follows, one task reads the
events past the tail's position whenever the hub hears of a commit (this process's, and on
PostgreSQL the other processes'), or every POLL_S at the latest, and hands each waiting follower
what it may see: everything to staff, a customer's own events to that customer. One read serves
every follower, and a customer's follower sleeps while other customers' sagas move.

The tail keeps the last KEPT events it read. A follower that was busy (sending to a slow client) when
events arrived takes them from there when it comes back, or, when they have left the window, reads
them from the database itself; so a follower holds only what it has in hand, however far behind it
falls. A follower that starts from a cursor (`after`) reads its way up the same way, then waits.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Generic, Protocol, TypeVar

from api.live.hub import TransitionHub
from api.live.recent_transitions import patiently
from api.supervision import woken

# Events kept for followers that were busy when they arrived: a few seconds of a busy service.
KEPT = 4096
# The most events one read takes, by the tail or by a follower reading its way up.
BATCH = 500
# How long the tail waits for the hub before it looks at the journal anyway: a bound on how late an
# event reaches followers should a notice be lost (a LISTEN connection that reconnected, say).
POLL_S = 1.0


class Logged(Protocol):
    @property
    def position(self) -> int: ...

    @property
    def customer_id(self) -> str | None: ...


Event = TypeVar("Event", bound=Logged)


@dataclass(eq=False, slots=True)
class _Waiter(Generic[Event]):
    """A follower that has seen everything through `position` and waits for more of `customer_id`'s
    events (None: everyone's). The tail hands it the new position and the events past its own."""

    position: int
    customer_id: str | None
    handed: asyncio.Future[tuple[int, list[Event]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class JournalTail(Generic[Event]):
    def __init__(
        self,
        read_past: Callable[[int, int, str | None], Awaitable[list[Event]]],
        read_head: Callable[[], Awaitable[int]],
        hub: TransitionHub,
        *,
        kept: int = KEPT,
        batch: int = BATCH,
        poll_s: float = POLL_S,
    ) -> None:
        """`read_past(position, limit, customer_id)` reads the events past a position, in position
        order, at most `limit`, only a customer's when `customer_id` is not None; `read_head()` the
        last position given out."""
        self._read_past, self._read_head, self._hub = read_past, read_head, hub
        self._batch, self._poll_s = batch, poll_s
        self.position = 0  # the last position read; meaningful while anyone follows
        self._window: deque[Event] = deque(maxlen=kept)  # contiguous positions, through `position`
        self._waiters: dict[str | None, set[_Waiter[Event]]] = {}
        self._followers = 0
        # True while nobody follows: the tail stops reading, and the next follower moves it to the
        # journal's head first instead of having it read everything that happened meanwhile.
        self._stale = True
        self._followed = asyncio.Event()
        self._reading = asyncio.Lock()
        self.reads = 0  # how many times the tail read the journal, for those who watch the sharing

    @property
    def followers(self) -> int:
        return self._followers

    async def run(self) -> None:
        """The tail's task, until cancelled: while anyone follows, it hears of commits through the hub
        and reads past its position on each (or every POLL_S). Raises what a read raises other than
        a transient error (the supervisor restarts it)."""
        while True:
            await self._followed.wait()
            with self._hub.alarm() as committed:
                while self._followers:
                    # Read first: a commit announced before the alarm was set up rang nothing.
                    committed.clear()
                    async with self._reading:
                        if not self._stale:
                            await self._advance()
                    await woken(committed, self._poll_s)  # either way: look again

    async def follow(
        self, after: int | None, customer_id: str | None = None
    ) -> AsyncGenerator[list[Event], None]:
        """The events past position `after` (or, when None, those committed from now on), in
        position order, in batches, for ever; with `customer_id`, only that customer's sagas'."""
        counted = False
        try:
            async with self._reading:
                if self._stale:
                    self.position = await patiently(self._read_head)
                    self._window.clear()
                    self._stale = False
                # Counted only now, with its position: whoever sees it counted (a client told its
                # subscription is live) may commit at once, and a head read after that commit would
                # have started the follower past it.
                self._followers += 1
                counted = True
                self._followed.set()
            position = self.position if after is None else after
            while True:
                if position < self.position:
                    kept = self._kept_past(position, customer_id)
                    if kept is None:
                        position, events = await self._catch_up(position, customer_id)
                    else:
                        events, position = kept, self.position
                else:
                    position, events = await self._wait_past(position, customer_id)
                if events:
                    yield events
        finally:
            if counted:
                self._followers -= 1
            if not self._followers:
                self._stale = True
                self._followed.clear()

    async def _advance(self) -> None:
        while True:
            self.reads += 1
            events = await self._read_events(self.position, None)
            if not events:
                return
            self._window.extend(events)
            self.position = events[-1].position
            self._hand(events)
            if len(events) < self._batch:
                return

    def _hand(self, events: list[Event]) -> None:
        """Wake the followers waiting for any of `events`: all of them for those waiting for
        everyone's, a customer's own for that customer's."""
        by_customer: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            if event.customer_id is not None:
                by_customer[event.customer_id].append(event)
        groups: list[tuple[str | None, list[Event]]] = [(None, events), *by_customer.items()]
        for customer_id, theirs in groups:
            for waiter in self._waiters.pop(customer_id, ()):
                if not waiter.handed.done():
                    past = [e for e in theirs if e.position > waiter.position]
                    waiter.handed.set_result((max(self.position, waiter.position), past))

    async def _wait_past(self, position: int, customer_id: str | None) -> tuple[int, list[Event]]:
        waiter: _Waiter[Event] = _Waiter(position, customer_id)
        waiting = self._waiters.setdefault(customer_id, set())
        waiting.add(waiter)
        try:
            return await waiter.handed
        finally:
            waiting.discard(waiter)
            if not waiting and self._waiters.get(customer_id) is waiting:
                del self._waiters[customer_id]

    def _kept_past(self, position: int, customer_id: str | None) -> list[Event] | None:
        """What the window holds past `position`, or None if some of it has left the window."""
        first = self._window[0].position if self._window else self.position + 1
        if position + 1 < first:
            return None
        events = list(islice(self._window, position + 1 - first, None))
        return events if customer_id is None else [e for e in events if e.customer_id == customer_id]

    async def _catch_up(self, position: int, customer_id: str | None) -> tuple[int, list[Event]]:
        """A follower's own read: the next batch past `position`, and the position it has seen
        through, which is at least the tail's when the batch was not full (the read began after the
        tail had read that far, and positions become visible in order)."""
        reached = self.position
        events = await self._read_events(position, customer_id)
        last = events[-1].position if events else position
        return (last if len(events) == self._batch else max(last, reached)), events

    async def _read_events(self, position: int, customer_id: str | None) -> list[Event]:
        return await patiently(partial(self._read_past, position, self._batch, customer_id))
