"""The loop every outbound relay runs, the event stream's (api/outbound/stream.py) and each webhook
endpoint's (api/outbound/webhooks.py): hold the relay's lease, read the journal past its position a
batch at a time, hand each batch to the relay's `Sink`, store the position the sink reached, and once
the journal is read to its end, wait for a commit (the hub's alarm) or the poll interval.

With several processes over PostgreSQL a relay sends only while it holds its lease
(persistence/fleet/relays.py); the others stand by, trying to take it every poll interval, and one
takes over from the stored position once the holder died. A task beside the rounds renews the lease
every third of its time, so a round that waits long for a receiver keeps it; a round whose position
cannot be stored (the lease was lost meanwhile) ends, and the relay stands by.

The position is stored only after the sink settled every event up to it, so a crash or a takeover in
between sends those events again: delivery is at least once, and receivers deduplicate on each
event's stable id. A round that fails (the receiver, the database) leaves the relay BEHIND: events
wait in the journal, and it tries again from its position after a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Protocol

from api.live.hub import TransitionHub
from api.supervision import stop_if_cancelled, woken
from domain.orchestration.attempts import jittered_pause
from persistence.fleet.relays import Relays
from persistence.read.event_log import LoggedEvent, events_after
from persistence.read.reader import ReadEngine

log = logging.getLogger("ordersaga.relays")

# The pauses between failed rounds: they start short, so a receiver back after a blip is caught up
# within seconds, and stay under a minute.
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 30.0


class RelayState(enum.StrEnum):
    STARTING = "starting"  # no round has ended yet
    CURRENT = "current"  # holds the lease; its last round sent every event it found
    BEHIND = "behind"  # its last round failed: events wait in the journal until it succeeds
    STANDBY = "standby"  # another process holds the lease and sends


class PartlyDelivered(Exception):
    """A sink's batch failed (the exception's cause says why) after every event up to journal
    position `reached` was settled: that much is stored before the round counts as failed."""

    def __init__(self, reached: int) -> None:
        super().__init__(f"settled up to position {reached}")
        self.reached = reached


class Sink(Protocol):
    """Where a relay sends the journal."""

    async def deliver(self, events: Sequence[LoggedEvent], since: int) -> int:
        """Send `events` (ascending positions, all past `since`; none when the journal has no more,
        a round all the same) and answer the position up to which every event is settled: taken by
        the receiver, or stored to be sent again later. `since` for none. Raises what made it fail,
        PartlyDelivered if some of them were settled first."""
        ...

    async def close(self) -> None:
        """Let go of what the sink holds open (connections), after a failed round and at the end;
        the next `deliver` opens it again."""
        ...


class LeaseLost(Exception):
    """Another process holds the relay now."""


class RelayDriver:
    """Drives relay `name` into `sink` as the module says, until cancelled (`run`). `batch`: most
    events read per round; `poll_s`: how often it looks for events no commit announced, and stands
    by between attempts at the lease; `gather_s`: how long a round woken by a commit waits for more
    (one stored position for many commits); `lease_ttl`: how long the lease lasts, None for one
    process, which always holds it; `opens_row`: whether this relay makes its own row (one no other
    code makes, as a webhook endpoint's creation does)."""

    def __init__(
        self,
        name: str,
        sink: Sink,
        *,
        relays: Relays,
        reads: ReadEngine,
        hub: TransitionHub,
        batch: int,
        poll_s: float,
        lease_ttl: timedelta | None,
        gather_s: float = 0.0,
        opens_row: bool = False,
    ) -> None:
        self.name = name
        self._sink, self._relays, self._reads, self._hub = sink, relays, reads, hub
        self._batch, self._poll_s, self._gather_s = batch, poll_s, gather_s
        self._lease_ttl = lease_ttl
        self._opens_row = opens_row
        self._state = RelayState.STARTING
        self._position = 0
        self._failures = 0  # rounds failed in a row

    @property
    def state(self) -> RelayState:
        """Where the relay stands in this process (RelayState's comments say what each means)."""
        return self._state

    @property
    def position(self) -> int:
        """The last position this process stored or read: every event up to it is settled."""
        return self._position

    async def run(self) -> None:
        """Relay until cancelled; raises nothing else, since every failure is a reason to wait and
        try again."""
        try:
            with self._hub.alarm() as committed:
                while True:
                    stop_if_cancelled()  # a sink's library may have dropped the stop
                    try:
                        await self._hold_and_drive(committed)
                    except LeaseLost:
                        log.warning("relay %s: the lease was lost; another process sends", self.name)
                        self._state = RelayState.STANDBY
                        await self._sink.close()  # it sends nothing more: the holder does
                    except Exception as error:  # the receiver or the database: the events wait
                        await self._failed(error)
        finally:
            await self._sink.close()
            if self._state is not RelayState.STANDBY:
                with contextlib.suppress(Exception):
                    await self._relays.release(self.name)  # another takes over at once

    async def _hold_and_drive(self, committed: asyncio.Event) -> None:
        if self._opens_row:
            await self._relays.open(self.name)
            self._opens_row = False
        position = await self._relays.take(self.name)
        if position is None:
            if self._state is not RelayState.STANDBY:
                log.debug("relay %s: another process holds the lease", self.name)
                await self._sink.close()
            self._state = RelayState.STANDBY
            await asyncio.sleep(self._poll_s)
            return
        self._position = position
        await self._holding(self._drive(committed))

    async def _holding(self, work: Coroutine[None, None, None]) -> None:
        """Run `work`, renewing the lease while it runs. Raises LeaseLost, `work` cancelled, once the
        lease is lost, and what `work` raises."""
        if self._lease_ttl is None:
            return await work  # one process: the lease is always this one's
        working = asyncio.ensure_future(work)
        renewing = asyncio.ensure_future(self._renew(self._lease_ttl))
        try:
            done, _ = await asyncio.wait((working, renewing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            working.cancel()
            renewing.cancel()
            await asyncio.gather(working, renewing, return_exceptions=True)
        if working in done:
            return working.result()
        renewing.result()  # raises the database's error, if that is what ended it
        raise LeaseLost

    async def _renew(self, ttl: timedelta) -> None:
        """Renew the lease every third of its time; return once another process has it."""
        while True:
            await asyncio.sleep(ttl.total_seconds() / 3)
            if await self._relays.take(self.name) is None:
                return

    async def _drive(self, committed: asyncio.Event) -> None:
        """Rounds, back to back while more is waiting, else once woken by a commit (of this process
        or, on PostgreSQL, another) or `poll_s` later."""
        while True:
            stop_if_cancelled()
            committed.clear()  # what commits from here on rings it again
            more = await self._round()
            self._state, self._failures = RelayState.CURRENT, 0
            if not more and await woken(committed, self._poll_s):
                # The commits that follow within a moment go out in the same round.
                await asyncio.sleep(self._gather_s)

    async def _round(self) -> bool:
        """One batch into the sink, its position stored; whether more is waiting."""
        events = await events_after(self._reads, self._position, self._batch)
        try:
            reached = await self._sink.deliver(events, self._position)
        except PartlyDelivered as partial:
            await self._advance(partial.reached)
            raise
        await self._advance(reached)
        return len(events) == self._batch and reached == events[-1].position

    async def _advance(self, position: int) -> None:
        if position <= self._position:
            return
        if not await self._relays.advance(self.name, position):
            raise LeaseLost
        self._position = position

    async def _failed(self, error: Exception) -> None:
        self._state = RelayState.BEHIND
        self._failures += 1
        with contextlib.suppress(Exception):
            await self._sink.close()
        pause = jittered_pause(FIRST_PAUSE_S, self._failures, MAX_PAUSE_S)
        cause = error.__cause__ if isinstance(error, PartlyDelivered) and error.__cause__ else error
        reason = str(cause) or type(cause).__name__
        # The first failure in a row is a warning; while it lasts, the same is repeated at DEBUG.
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(
            level,
            "relay %s is behind (%s); events wait in the journal, trying again in %.1fs",
            self.name,
            reason,
            pause,
        )
        await asyncio.sleep(pause)
