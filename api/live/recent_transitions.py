"""The transitions live subscribers send, read once per process however many subscribers send them.

A notice (api/live/hub.py) wakes every subscriber of its saga, and each needs the same timeline rows and
the saga as it is after them. The first to ask reads them: the rows past its cursor, then the rows of
their sagas, one query each for all the sagas it asks about. Subscribers that ask while that read is
under way wait for it, and later ones find the transitions kept here. A transition is made once
(`make`), so every subscriber sends the same object, and what it renders to for one selection serves
every subscriber with that selection (api/graphql/renditions.py).

Kept: each saga's transitions read so far, with contiguous sequences, at most KEPT_PER_SAGA of them,
for the KEPT_SAGAS sagas asked about last. Whoever asks for transitions older than those kept, or
for ones announced after the last read, reads them. A read meeting a transient database error is
tried again (`patiently`), so a stream outlives the database's bad moments instead of ending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, Protocol, TypeVar

from domain.orchestration.attempts import jittered_pause
from persistence.database import brief, is_transient
from persistence.read.rows import SagaRow, TransitionRow
from persistence.read.sagas import SagaReads
from persistence.read.timeline import TimelineReads

T = TypeVar("T")
log = logging.getLogger("ordersaga.api")

# A read that met a transient database error waits this long before its next try, doubling each time.
RETRY_FIRST = 0.1
RETRY_CAP = 5.0
# Enough for every saga a busy feed follows at once, and for a saga's whole life with a few retries.
KEPT_SAGAS = 1024
KEPT_PER_SAGA = 32


async def patiently(read: Callable[[], Awaitable[T]]) -> T:
    """`read()`, tried again after each transient database error (`is_transient`), waiting a jittered
    pause from RETRY_FIRST seconds, doubling up to RETRY_CAP; a line is logged per wait. Other errors
    raise."""
    failures = 0
    while True:
        try:
            return await read()
        except Exception as error:
            if not is_transient(error):
                raise
            failures += 1
            wait = jittered_pause(RETRY_FIRST, failures, RETRY_CAP)
            log.warning("subscription read failed (%s); trying again in %.1f s", brief(error), wait)
        await asyncio.sleep(wait)


class Transition(Protocol):
    @property
    def sequence(self) -> int: ...


Update = TypeVar("Update", bound=Transition)


@dataclass(frozen=True, slots=True)
class Wanted:
    """A saga's transitions past sequence `after`, which must include those through `through` (the
    last one a notice announced as committed)."""

    after: int
    through: int


@dataclass(slots=True)
class _Kept(Generic[Update]):
    first: int  # the sequence of updates[0]
    updates: list[Update]

    @property
    def last(self) -> int:
        return self.first + len(self.updates) - 1

    def past(self, wanted: Wanted) -> list[Update] | None:
        """The kept transitions past `wanted.after`, or None unless they are all that is wanted."""
        if self.first > wanted.after + 1 or self.last < wanted.through:
            return None
        return self.updates[wanted.after + 1 - self.first :]


@dataclass(slots=True)
class _Reading(Generic[Update]):
    """A read under way; once `done` is set, `read` holds what it read past each saga's cursor."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    read: dict[str, _Kept[Update]] = field(default_factory=dict)

    def past(self, saga_id: str, want: Wanted) -> list[Update] | None:
        read = self.read.get(saga_id)
        return None if read is None else read.past(want)


class RecentTransitions(Generic[Update]):
    def __init__(
        self,
        timeline: TimelineReads,
        saga_reads: SagaReads,
        make: Callable[[TransitionRow, SagaRow | None], Update],
        *,
        sagas: int = KEPT_SAGAS,
        per_saga: int = KEPT_PER_SAGA,
    ) -> None:
        """`make(timeline_row, saga_row)` builds a transition as subscribers send it; the saga row is
        read after the timeline row, so it is the saga at that transition or later (None if the
        saga has no saga_view row)."""
        self.timeline = timeline
        self.saga_reads = saga_reads
        self._make = make
        self._sagas = sagas
        self._per_saga = per_saga
        self._kept: OrderedDict[str, _Kept[Update]] = OrderedDict()
        self._reading: dict[str, _Reading[Update]] = {}
        self.reads = 0  # how many times the timeline was read, for those who watch the sharing

    async def past(self, wanted: Mapping[str, Wanted]) -> dict[str, list[Update]]:
        """Per saga: its transitions past `after`, in sequence order, every one through `through`
        among them. Reads only what is neither kept nor being read; raises what a read raises other
        than a transient error."""
        found: dict[str, list[Update]] = {}
        unread: dict[str, Wanted] = {}
        awaited: dict[str, tuple[Wanted, _Reading[Update]]] = {}
        for saga_id, want in wanted.items():
            updates = self._kept_past(saga_id, want)
            if want.through <= want.after:
                found[saga_id] = updates or []  # nothing new announced: its notice came late
            elif updates is not None:
                found[saga_id] = updates
            elif (reading := self._reading.get(saga_id)) is not None:
                awaited[saga_id] = (want, reading)
            else:
                unread[saga_id] = want
        if unread:
            found |= await self._read_now(unread)
        missed: dict[str, Wanted] = {}
        for saga_id, (want, reading) in awaited.items():
            await reading.done.wait()
            updates = reading.past(saga_id, want) or self._kept_past(saga_id, want)
            if updates is None:
                missed[saga_id] = want  # that read began before this notice, or further on
            else:
                found[saga_id] = updates
        if missed:
            # Asked again rather than read now: every subscriber that waited on that read missed
            # alike, and the first of them to ask reads for all the others, who wait for its read
            # instead of each taking a connection of the read pool that requests need too.
            found |= await self.past(missed)
        return found

    def _kept_past(self, saga_id: str, want: Wanted) -> list[Update] | None:
        kept = self._kept.get(saga_id)
        if kept is None:
            return None
        self._kept.move_to_end(saga_id)
        return kept.past(want)

    async def _read_now(self, wanted: Mapping[str, Wanted]) -> dict[str, list[Update]]:
        reading: _Reading[Update] = _Reading()
        for saga_id in wanted:
            self._reading[saga_id] = reading
        try:
            self.reads += 1
            after = {saga_id: want.after for saga_id, want in wanted.items()}
            rows = await patiently(partial(self.timeline.transitions_after, after))
            saga_ids = list({row.saga_id for row in rows})
            sagas = {saga.id: saga for saga in await patiently(partial(self.saga_reads.sagas, saga_ids))}
            made: dict[str, list[Update]] = defaultdict(list)
            for row in rows:
                made[row.saga_id].append(self._make(row, sagas.get(row.saga_id)))
            for saga_id, cursor in after.items():
                reading.read[saga_id] = _Kept(cursor + 1, self._keep(saga_id, cursor, made[saga_id]))
            return {saga_id: read.updates for saga_id, read in reading.read.items()}
        finally:
            for saga_id in wanted:
                if self._reading.get(saga_id) is reading:
                    del self._reading[saga_id]
            reading.done.set()

    def _keep(self, saga_id: str, after: int, updates: list[Update]) -> list[Update]:
        """Keeps the transitions read past `after` with those kept already (whose objects win, as they
        may have been rendered); the merged ones past `after`."""
        kept = self._kept.pop(saga_id, None)
        if kept is not None and after + 1 <= kept.last + 1:
            # This read reaches from `after` to now, so it overlaps or continues what is kept.
            older = [u for u in updates if u.sequence < kept.first]
            newer = [u for u in updates if u.sequence > kept.last]
            merged = _Kept(min(kept.first, after + 1), older + kept.updates + newer)
        else:
            merged = _Kept(after + 1, updates)
        past = merged.updates[after + 1 - merged.first :]
        if merged.updates:
            dropped = max(0, len(merged.updates) - self._per_saga)
            self._kept[saga_id] = _Kept(merged.first + dropped, merged.updates[dropped:])
            while len(self._kept) > self._sagas:
                self._kept.popitem(last=False)
        return past
