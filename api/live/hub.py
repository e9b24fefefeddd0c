"""In-process fan-out of committed saga transitions to live subscribers.

The orchestrator's listener publishes, after each commit, which journal sequences of which saga are
new (`Committed`). A notice carries no transitions: subscribers read those from `saga_timeline`,
past the last sequence they sent. So notices can be merged without losing anything, and a subscriber
that falls behind only has more to read when it catches up, never a gap.

Publishing never waits. Each subscriber keeps at most one pending notice per saga (later notices of
the same saga are merged into it), so one watching a single saga holds at most one, and one watching
every saga holds one per saga changed since it last caught up, up to a bound; past the bound it is
told it fell behind rather than hold memory for a client that stopped reading.

Those that only need to know that something committed (the journal tail, which reads the journal
in position order) hold an `alarm` instead, which costs nothing per notice.

`publish` is the only way in, and it has two callers: this process's commits arrive through the
orchestrator's listener (`on_change`); other processes' through the commit listener
(persistence/fleet/commit_listener.py), which hears the NOTIFY their transactions sent, carrying the
same four fields, and which the composition root (api/service.py) wires to `publish`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

from domain.model.saga import SagaChange, SagaStatus

# How many distinct sagas may wait, unread, for one subscriber. It is also the most sagas whose
# timelines one catch-up reads in a single query, well within SQLite's and asyncpg's bind limits.
DEFAULT_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class Committed:
    """Journal sequences `first`..`last` of a saga were committed; `status` is the saga's after them."""

    saga_id: str
    first: int
    last: int
    status: SagaStatus

    @classmethod
    def of(cls, change: SagaChange) -> Committed:
        first = 1 if change.before is None else change.before.version + 1
        return cls(change.after.saga_id, first, change.after.version, change.after.status)

    def followed_by(self, later: Committed) -> Committed:
        return replace(self, last=later.last, status=later.status)


class FellBehind(Exception):
    """More sagas changed than a subscriber may keep pending while it was not reading."""


class Subscriber:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending: dict[str, Committed] = {}
        self._fell_behind = False
        self._arrived = asyncio.Event()

    def offer(self, notice: Committed) -> None:
        if self._fell_behind:
            return
        earlier = self._pending.get(notice.saga_id)
        if earlier is not None:
            self._pending[notice.saga_id] = earlier.followed_by(notice)
        elif len(self._pending) < self._limit:
            self._pending[notice.saga_id] = notice
        else:
            self._fell_behind = True
            self._pending.clear()
        self._arrived.set()

    async def next(self) -> list[Committed]:
        """Wait for notices, then take all of them: one per saga, in the order sagas first changed."""
        await self._arrived.wait()
        self._arrived.clear()
        if self._fell_behind:
            raise FellBehind(f"more than {self._limit} sagas changed while this subscriber was not reading")
        notices = list(self._pending.values())
        self._pending.clear()
        return notices


class TransitionHub:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        # Keyed by the saga watched; None for subscribers that watch every saga.
        self._subscribers: dict[str | None, set[Subscriber]] = {}
        # Set on every notice, for those who only need to know that something committed.
        self._alarms: set[asyncio.Event] = set()

    @property
    def subscribers(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    def publish(self, notice: Committed) -> None:
        for alarm in self._alarms:
            alarm.set()
        for key in (notice.saga_id, None):
            for subscriber in self._subscribers.get(key, ()):
                subscriber.offer(notice)

    def on_change(self, change: SagaChange) -> None:
        """The orchestrator listener: called right after every commit."""
        self.publish(Committed.of(change))

    @contextlib.contextmanager
    def alarm(self) -> Iterator[asyncio.Event]:
        """An event set on every notice from now on, until the block is left (the journal tail's
        wake-up, api/live/journal_tail.py): it holds nothing, however many notices come."""
        alarm = asyncio.Event()
        self._alarms.add(alarm)
        try:
            yield alarm
        finally:
            self._alarms.discard(alarm)

    @contextlib.contextmanager
    def subscribe(self, saga_id: str | None = None) -> Iterator[Subscriber]:
        """Notices of one saga (or of every saga) from now on, until the block is left."""
        subscriber = Subscriber(self._limit)
        group = self._subscribers.setdefault(saga_id, set())
        group.add(subscriber)
        try:
            yield subscriber
        finally:
            group.discard(subscriber)
            if not group:
                self._subscribers.pop(saga_id, None)
