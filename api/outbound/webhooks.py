"""Webhook delivery: every journal event an endpoint takes is POSTed to it, signed by the Standard
Webhooks specification, at least once, and per saga in journal order.

Each enabled endpoint has a relay task of its own, so a slow or dead endpoint holds up no other, and
nothing here runs in a saga's commit: relays read the journal after the fact. The relays' loop
(api/outbound/relaying.py, the event stream's too) holds the lease, reads the journal and stores the
position; with several processes over PostgreSQL each endpoint is driven by one process at a time,
and another takes over from the stored position when that one dies. What is particular to webhooks
is the sink, `EndpointDeliveries`; a round's requests are signed and sent from a process of their own
(api/outbound/sender_process.py), so that their cost falls on another core than the sagas'.

A relay's round sends the journal events past its position: those of sagas with an undelivered event
are stored behind it; the others are sent, concurrently across sagas and one at a time within a saga.
An event that fails is stored for a retry with every later event of its saga, and the relay moves on.
The stored deliveries that are due (`WebhookStore.due`), each saga's in order, are sent beside the
rounds, one such send at a time: a receiver that holds one saga's retry holds up neither the rounds
nor, through them, other sagas' new events; only that saga's later events wait, behind it in the
store. The position advances past the whole batch once the failures are stored. Events are sent
before the position is stored, so a crash in between sends them again: receivers deduplicate on
`webhook-id`, the event's stable id.

2xx is success; any other answer (a redirect too: they are not followed), a timeout or a connection
error is a failure, retried on `retry_pause`'s schedule for `retry_for`; an endpoint that has not
taken a single event for `disable_after` is disabled, its reason stated (docs/decisions/0020-webhooks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile

from api.live.hub import TransitionHub
from api.outbound.addresses import Reach
from api.outbound.relaying import RelayDriver
from api.outbound.sender_process import Attempt, Destination, Message, SenderProcess
from api.supervision import Supervisor, unless_busy, woken
from domain.orchestration.attempts import jittered_pause
from domain.ports import Clock
from persistence.fleet.relays import Relays
from persistence.read.event_log import LoggedEvent
from persistence.read.reader import ReadEngine
from persistence.webhooks import Delivery, DeliveryStatus, Endpoint, Outcome, WebhookStore, relay_name

log = logging.getLogger("ordersaga.webhooks")

# Journal events read per round, and sagas whose due deliveries are sent at a time.
BATCH = 256
# Requests in flight to one endpoint at once for a round's new events, and as many for its due retries
# (one per saga at most: a saga's new events wait in the store behind its undelivered one).
CONCURRENCY = 16
# How often a relay looks for work when nothing woke it: other processes' commits on SQLite, retries
# coming due, and changes made to the endpoint in another process.
POLL_S = 1.0
# How long a relay woken by a commit waits for more before its round: under load, one round (one
# stored position) serves many commits instead of each commit its own.
GATHER_S = 0.05
# The retry schedule: the first retry 1-2 s after the failure, each wait doubling...
FIRST_RETRY_S = 2.0
# ...up to a minute, or a tenth of how long the delivery has been failing when that is more (at most
# an hour): a receiver back after an outage of any length is caught up within a tenth of it, and a
# minute after a short one.
SHORT_CAP_S = 60.0
LONG_CAP_S = 3600.0
# How often a relay deletes the deliveries that succeeded longer ago than its policy keeps them, and
# how many at a time: short transactions, which on SQLite hold the sagas' write lock only briefly.
PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 1000


def retry_pause(attempt: int, failing_for: timedelta) -> float:
    """Seconds before the next attempt at a delivery whose `attempt`-th attempt in a row (1, 2, ...)
    failed, `failing_for` after its first failed: jittered (attempts.jittered_pause), doubling from
    FIRST_RETRY_S, capped at SHORT_CAP_S or a tenth of `failing_for`, whichever is more, but never
    above LONG_CAP_S. Over ten minutes no wait exceeds a minute."""
    cap = min(max(SHORT_CAP_S, failing_for.total_seconds() / 10), LONG_CAP_S)
    return jittered_pause(FIRST_RETRY_S, attempt, cap)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Timeouts in seconds; `retry_for`: how long a delivery is retried before it fails;
    `disable_after`: how long an endpoint may fail without one success before it is disabled;
    `keep_succeeded`: how long a stored delivery that succeeded stays listed before it is pruned."""

    connect_timeout: float = 2.0
    timeout: float = 10.0
    retry_for: timedelta = timedelta(days=1)
    disable_after: timedelta = timedelta(days=1)
    keep_succeeded: timedelta = timedelta(days=7)
    reach: Reach = Reach()


@dataclass(frozen=True, slots=True)
class Wiring:
    """What every endpoint's relay works with: where endpoints, deliveries and relay positions are
    stored, the journal's reads, the hub that tells of commits, the process requests go out from,
    and the delivery policy.
    `lease_ttl`: how long a relay's lease lasts, with several processes; None for one process, which
    always holds every relay."""

    store: WebhookStore
    relays: Relays
    reads: ReadEngine
    hub: TransitionHub
    sender: SenderProcess
    clock: Clock
    policy: DeliveryPolicy
    lease_ttl: timedelta | None


class EndpointDeliveries:
    """One endpoint's deliveries: the sink (api/outbound/relaying.py) its relay drives, each batch of
    the journal one round as the module's docstring says."""

    def __init__(self, endpoint_id: str, wiring: Wiring) -> None:
        self.endpoint_id = endpoint_id
        self._store, self._clock, self._policy = wiring.store, wiring.clock, wiring.policy
        self._process = wiring.sender
        # The URL the last round sent to and the secret it signed with: when either changes, what is
        # being sent stops and the idle connections to the URL close.
        self._sent_to: tuple[str, str] | None = None
        self._pruned_at: float | None = None  # the event loop's clock; None: not yet
        # Until when (the event loop's clock) the endpoint is known to have no undelivered delivery
        # stored, so that a round need not look for due ones nor for sagas to hold: the two
        # statements that, with the position, most rounds would otherwise cost. Only this relay
        # stores deliveries while it holds the lease, and an operator's redelivery only makes FAILED
        # ones PENDING, so none appears unless this relay stores one (which ends the knowledge). It is
        # renewed at most every POLL_S, far less than a lease lasts, so a process that lost the lease
        # while paused does not trust it past the pause.
        self._none_stored_until = 0.0
        self._next_look = 0.0  # when `undelivered` may be asked again
        self._retrying: asyncio.Task[None] | None = None  # the due deliveries being sent beside the rounds
        self._failures_noted = False  # whether this relay stored a failing time no success cleared since

    async def deliver(self, events: Sequence[LoggedEvent], since: int) -> int:
        """One round: `events` (those the endpoint takes), the failures stored, with the due stored
        deliveries sent beside it (`_retry_beside`); the last position of `events` (`since` if none,
        or if the endpoint was deleted or disabled meanwhile: Webhooks stops this relay then).
        Raises what the last send of due deliveries raised, and what the round meets."""
        endpoint = await self._store.endpoint(self.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            await self.close()  # what is being sent beside the rounds stops now, not when Webhooks sees it
            return since
        if self._sent_to != (endpoint.url, endpoint.secret):
            # Retries on their way to the old URL, or signed with a rotated secret, stop; the idle
            # connections to the old URL close.
            await self.close()
            self._sent_to = (endpoint.url, endpoint.secret)
        now = asyncio.get_running_loop().time()
        stored_none = now < self._none_stored_until
        if not stored_none:
            self._retry_beside(endpoint)
        taken = [event for event in events if endpoint.takes(event.type)]
        failed = await self._send_new(endpoint, taken, stored_none)
        await self._note_health(endpoint, failed)
        await self._prune(endpoint)
        if not stored_none and now >= self._next_look:
            self._next_look = now + POLL_S
            if not await self._store.undelivered(endpoint.id):
                self._none_stored_until = now + POLL_S
        return events[-1].position if events else since

    async def close(self) -> None:
        """Stop sending due deliveries (what was on the wire is sent again later, under the same
        webhook-id) and close the idle connections to the endpoint; the next round opens new ones."""
        retrying, self._retrying = self._retrying, None
        if retrying is not None:
            retrying.cancel()
            # Waited for without raising what it raised, while a cancellation of this task (the
            # relay's round, stopped) still ends it here.
            await asyncio.wait({retrying})
            if not retrying.cancelled() and (failure := retrying.exception()) is not None:
                # It ended before it could be cancelled, with no round after it to report it.
                log.warning(
                    "webhook endpoint %s: sending due deliveries failed: %r", self.endpoint_id, failure
                )
        if self._sent_to is not None:
            self._process.close_idle(self._sent_to[0])

    def _retry_beside(self, endpoint: Endpoint) -> None:
        """Start sending the due stored deliveries beside the round, unless the last such send still
        runs. Raises what that last send raised, once it ended: the round fails with it, as it would
        have sending them itself."""
        if self._retrying is not None:
            if not self._retrying.done():
                return
            ended, self._retrying = self._retrying, None
            if not ended.cancelled():
                ended.result()
        self._retrying = asyncio.create_task(self._retry_due(endpoint))

    async def _retry_due(self, endpoint: Endpoint) -> None:
        """Send the due stored deliveries, each saga's in order until one fails; store the outcomes
        and what they say of the endpoint's health."""
        now = self._clock.now()
        # A FAILED one holds the rest of its saga until an operator redelivers it.
        chains = [
            pending
            for chain in await self._store.due(endpoint.id, now, BATCH)
            if (pending := list(takewhile(_is_pending, chain)))
        ]
        sent = [[(delivery.event_id, delivery.body.encode()) for delivery in chain] for chain in chains]
        answers = await self._send(endpoint, sent)
        outcomes = [
            self._outcome(delivery, attempt)
            for chain, attempts in zip(chains, answers, strict=True)
            for delivery, attempt in zip(chain, attempts, strict=False)
        ]
        await self._store.record(endpoint.id, outcomes, now)
        await self._note_health(endpoint, [attempt for attempts in answers for attempt in attempts])

    async def _send(self, endpoint: Endpoint, chains: list[list[Message]]) -> list[list[Attempt]]:
        """The round's requests, through the sending process (SenderProcess.send)."""
        policy = self._policy
        to = Destination(endpoint.url, policy.reach, policy.connect_timeout, policy.timeout, endpoint.secret)
        return await self._process.send(to, chains, CONCURRENCY)

    def _outcome(self, delivery: Delivery, attempt: Attempt) -> Outcome:
        now = self._clock.now()
        details = (attempt.response_code, attempt.latency_ms, attempt.error)
        if attempt.ok:
            return Outcome(delivery.position, DeliveryStatus.SUCCEEDED, *details, None, None)
        since = delivery.failing_since or now
        if now - since >= self._policy.retry_for:
            return Outcome(delivery.position, DeliveryStatus.FAILED, *details, since, None)
        pause = timedelta(seconds=retry_pause(delivery.attempts + 1, now - since))
        return Outcome(delivery.position, DeliveryStatus.PENDING, *details, since, now + pause)

    async def _send_new(
        self, endpoint: Endpoint, events: Sequence[LoggedEvent], stored_none: bool
    ) -> list[Attempt]:
        """Send new events (or store them behind their saga's undelivered one, unless `stored_none`
        says there is none); store the failures."""
        by_saga: dict[str, list[LoggedEvent]] = {}
        for event in events:
            by_saga.setdefault(event.saga_id, []).append(event)
        waiting = set() if stored_none else await self._store.unfinished_sagas(endpoint.id, by_saga)
        stored = [
            self._failed(endpoint, event, None)
            for saga_id in waiting & by_saga.keys()
            for event in by_saga[saga_id]
        ]
        chains = [saga_events for saga_id, saga_events in by_saga.items() if saga_id not in waiting]
        answers = await self._send(endpoint, [[(e.event_id, e.payload()) for e in chain] for chain in chains])
        for chain, attempts in zip(chains, answers, strict=True):
            if len(attempts) == len(chain) and attempts[-1].ok:
                continue
            # The last attempt failed: its event is stored for a retry, the saga's later ones behind it.
            failed = len(attempts) - 1
            stored.append(self._failed(endpoint, chain[failed], attempts[-1]))
            stored.extend(self._failed(endpoint, later, None) for later in chain[failed + 1 :])
        if stored:
            self._none_stored_until = 0.0
            await self._store.store(stored)
        return [attempt for attempts in answers for attempt in attempts]

    def _failed(self, endpoint: Endpoint, event: LoggedEvent, attempt: Attempt | None) -> Delivery:
        """The stored delivery of `event`: after its failed first `attempt`, or held (None)."""
        now = self._clock.now()
        pause = None if attempt is None else timedelta(seconds=retry_pause(1, timedelta()))
        return Delivery(
            endpoint_id=endpoint.id,
            position=event.position,
            event_id=event.event_id,
            event_type=event.type,
            saga_id=event.saga_id,
            body=event.payload().decode(),
            status=DeliveryStatus.PENDING.value,
            attempts=0 if attempt is None else 1,
            response_code=None if attempt is None else attempt.response_code,
            latency_ms=None if attempt is None else attempt.latency_ms,
            error=None if attempt is None else attempt.error,
            failing_since=None if attempt is None else now,
            next_attempt_at=None if pause is None else now + pause,
            updated_at=now,
        )

    async def _prune(self, endpoint: Endpoint) -> None:
        """Delete the deliveries that succeeded more than `keep_succeeded` ago, in the first round and
        then every PRUNE_EVERY_S (under the lease, so one process does it), PRUNE_BATCH at a time."""
        now = asyncio.get_running_loop().time()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        before = self._clock.now() - self._policy.keep_succeeded
        while await self._store.prune(endpoint.id, before, PRUNE_BATCH) == PRUNE_BATCH:
            pass

    async def _note_health(self, endpoint: Endpoint, attempts: Sequence[Attempt]) -> None:
        """A success in the round: the endpoint is well. Failures alone: it has been failing since the
        first of them, and once that is `disable_after` ago it is disabled (checked every round, so
        an endpoint whose deliveries all gave up is disabled too)."""
        now = self._clock.now()
        since = endpoint.failing_since
        succeeded = any(attempt.ok for attempt in attempts)
        # `endpoint` was read as the round (or the send beside it) began: the other may have noted
        # failures since, which only this relay notes while it holds the lease, so it knows.
        if (succeeded and (since is not None or self._failures_noted)) or (
            attempts and not succeeded and since is None
        ):
            since = await self._store.note_health(endpoint.id, succeeded, now)
            self._failures_noted = not succeeded
        if since is None or now - since < self._policy.disable_after:
            return
        reason = f"no delivery succeeded since {since.isoformat()}"
        if (last := await self._store.last_error(endpoint.id)) is not None:
            reason += f"; the last attempt: {last}"
        # `since` may be what this round read, and a send beside it may have succeeded meanwhile: the
        # store disables only an endpoint failing that long as it stands.
        if await self._store.disable(endpoint.id, reason, now, now - self._policy.disable_after):
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)


def _is_pending(delivery: Delivery) -> bool:
    return delivery.status == DeliveryStatus.PENDING.value


class Webhooks:
    """Keeps one relay task running per enabled endpoint (`run`, until cancelled), starting and
    stopping them as endpoints are created, enabled, disabled and deleted, here or in another process."""

    def __init__(self, wiring: Wiring) -> None:
        self.store = wiring.store
        self.policy = wiring.policy
        self._wiring = wiring
        self._changed = asyncio.Event()
        self._running: dict[str, Supervisor] = {}

    def changed(self) -> None:
        """Endpoints changed in this process: look at once rather than at the next poll."""
        self._changed.set()

    def now(self) -> datetime:
        return self._wiring.clock.now()

    async def run(self) -> None:
        try:
            while True:
                self._changed.clear()
                # A database busy or away: the relays running go on, and the next poll looks again.
                enabled = await unless_busy(self.store.enabled_ids, "webhook endpoints")
                if enabled is not None:
                    await self._follow(enabled)
                await woken(self._changed, POLL_S)
        finally:
            await self._follow(set())

    async def _follow(self, enabled: set[str]) -> None:
        for endpoint_id in set(self._running) - enabled:
            await self._running.pop(endpoint_id).stop()
        wiring = self._wiring
        for endpoint_id in enabled - set(self._running):
            relay = RelayDriver(
                relay_name(endpoint_id),
                EndpointDeliveries(endpoint_id, wiring),
                relays=wiring.relays,
                reads=wiring.reads,
                hub=wiring.hub,
                batch=BATCH,
                poll_s=POLL_S,
                gather_s=GATHER_S,
                lease_ttl=wiring.lease_ttl,
            )
            supervisor = Supervisor()
            supervisor.keep(relay.name, relay.run)
            self._running[endpoint_id] = supervisor
