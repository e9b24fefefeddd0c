"""Webhook delivery: every journal event an endpoint takes is POSTed to it, signed by the Standard
Webhooks specification, at least once, and per saga in journal order.

Each enabled endpoint has a relay task of its own, so a slow or dead endpoint holds up no other, and
nothing here runs in a saga's commit: relays read the journal after the fact. The relays' loop
(api/outbound/relaying.py, the event stream's too) holds the lease, reads the journal and stores the
position; with several processes over PostgreSQL each endpoint is driven by one process at a time,
and another takes over from the stored position when that one dies. What is particular to webhooks
is the sink, `EndpointDeliveries`, and requests go out through `wire.Origin`.

A relay's round: first the stored deliveries that are due (`WebhookStore.due`), each saga's in order;
then the journal events past its position. Those of sagas with an undelivered event are stored behind
it; the others are sent, concurrently across sagas and one at a time within a saga. An event that
fails is stored for a retry with every later event of its saga, and the relay moves on. The position
advances past the whole batch once the failures are stored. Events are sent before the position is
stored, so a crash in between sends them again: receivers deduplicate on `webhook-id`, the event's
stable id.

2xx is success; any other answer (a redirect too: they are not followed), a timeout or a connection
error is a failure, retried on `retry_pause`'s schedule for `retry_for`; an endpoint that has not
taken a single event for `disable_after` is disabled, its reason stated (docs/decisions/0020-webhooks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from api.live.hub import TransitionHub
from api.outbound.addresses import Reach, reach_problem
from api.outbound.relaying import RelayDriver
from api.outbound.signing import Signer
from api.outbound.wire import Origin
from api.supervision import Supervisor, unless_busy
from domain.orchestration.attempts import jittered_pause
from domain.ports import Clock
from persistence.fleet.relays import Relays
from persistence.read.event_log import LoggedEvent
from persistence.webhooks import Delivery, DeliveryStatus, Endpoint, Outcome, WebhookStore, relay_name

log = logging.getLogger("ordersaga.webhooks")
T = TypeVar("T")

# Journal events read per round, and sagas whose due deliveries are retried per round.
BATCH = 256
# Requests in flight to one endpoint at once (one per saga at most).
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
MAX_ERROR = 300
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
class Attempt:
    """One POST: whether the endpoint took it, its status code, how long it took, and why it failed."""

    ok: bool
    response_code: int | None
    latency_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Wiring:
    """What every endpoint's relay works with: where endpoints, deliveries and relay positions are
    stored, the journal's reader, the hub that tells of commits, and the delivery policy.
    `lease_ttl`: how long a relay's lease lasts, with several processes; None for one process, which
    always holds every relay."""

    store: WebhookStore
    relays: Relays
    reader: AsyncEngine
    hub: TransitionHub
    clock: Clock
    policy: DeliveryPolicy
    lease_ttl: timedelta | None


class Sender:
    """Sends signed events to one endpoint, as it is configured for one round, through `origin` (its
    URL's connections)."""

    def __init__(self, origin: Origin, endpoint: Endpoint, policy: DeliveryPolicy) -> None:
        self._origin, self._endpoint, self._policy = origin, endpoint, policy
        self._signer = Signer(endpoint.secret)
        self._refusal: asyncio.Task[str | None] | None = None

    async def send(self, event_id: str, body: bytes) -> Attempt:
        # The address is checked once a round (the first send awaits it, the others share its answer).
        if self._refusal is None:
            self._refusal = asyncio.ensure_future(reach_problem(self._endpoint.url, self._policy.reach))
        if self._refusal.done():  # as for every send after the first: no shield to make per event
            refusal = self._refusal.result()
        else:
            refusal = await asyncio.shield(self._refusal)
        if refusal is not None:
            return Attempt(False, None, 0, f"not sent: {refusal}")
        loop = asyncio.get_running_loop()
        started = loop.time()
        headers = self._signer.headers(event_id, body)
        try:
            status = await self._origin.post(body, headers, self._policy.timeout)
        except TimeoutError:
            error: str | None = f"no answer within {self._policy.timeout:g} s"
            return Attempt(False, None, _ms_since(loop, started), error)
        except Exception as failure:
            # The connection's errors (OSError and its kin), and whatever else it met: the receiver
            # did not take it, which is a failed attempt like any.
            error = f"{type(failure).__name__}: {failure}"[:MAX_ERROR]
            return Attempt(False, None, _ms_since(loop, started), error)
        ok = 200 <= status < 300
        error = None if ok else f"answered {status}"
        return Attempt(ok, status, _ms_since(loop, started), error)


def _ms_since(loop: asyncio.AbstractEventLoop, started: float) -> int:
    return round((loop.time() - started) * 1000)


class EndpointDeliveries:
    """One endpoint's deliveries: the sink (api/outbound/relaying.py) its relay drives, each batch of
    the journal one round as the module's docstring says."""

    def __init__(self, endpoint_id: str, wiring: Wiring) -> None:
        self.endpoint_id = endpoint_id
        self._store, self._clock, self._policy = wiring.store, wiring.clock, wiring.policy
        from api.outbound.resolver import GuardedResolver  # lazily: aiohttp only once an endpoint exists

        self._resolver = GuardedResolver(self._policy.reach)
        # The connections to the endpoint's URL, kept from round to round while it stays the same.
        self._origin: Origin | None = None
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

    async def deliver(self, events: Sequence[LoggedEvent], since: int) -> int:
        """One round: the due stored deliveries, then `events` (those the endpoint takes), the
        failures stored; the last position of `events` (`since` if none, or if the endpoint was
        deleted or disabled meanwhile: Webhooks stops this relay then)."""
        endpoint = await self._store.endpoint(self.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return since
        sender = Sender(await self._origin_of(endpoint.url), endpoint, self._policy)
        now = asyncio.get_running_loop().time()
        stored_none = now < self._none_stored_until
        retried = [] if stored_none else await self._retry_due(endpoint, sender)
        taken = [event for event in events if endpoint.takes(event.type)]
        failed = await self._send_new(endpoint, sender, taken, stored_none)
        await self._note_health(endpoint, [*retried, *failed])
        await self._prune(endpoint)
        if not stored_none and now >= self._next_look:
            self._next_look = now + POLL_S
            if not await self._store.undelivered(endpoint.id):
                self._none_stored_until = now + POLL_S
        return events[-1].position if events else since

    async def close(self) -> None:
        """Close the idle connections to the endpoint; the next round opens new ones."""
        if self._origin is not None:
            await self._origin.close()

    async def _origin_of(self, url: str) -> Origin:
        if self._origin is None or self._origin.url != url:
            if self._origin is not None:
                await self._origin.close()
            self._origin = Origin(url, self._resolver, self._policy.connect_timeout)
        return self._origin

    async def _retry_due(self, endpoint: Endpoint, sender: Sender) -> list[Attempt]:
        """Send the due stored deliveries, each saga's in order until one fails; store the outcomes."""
        now = self._clock.now()
        chains = await self._store.due(endpoint.id, now, BATCH)
        outcomes: list[Outcome] = []
        attempts: list[Attempt] = []

        async def resend(chain: Sequence[Delivery]) -> None:
            for delivery in chain:
                if delivery.status != DeliveryStatus.PENDING.value:
                    return  # a FAILED one holds the rest until an operator redelivers it
                attempt = await sender.send(delivery.event_id, delivery.body.encode())
                attempts.append(attempt)
                outcomes.append(self._outcome(delivery, attempt))
                if not attempt.ok:
                    return

        await _each_bounded(resend, chains)
        await self._store.record(endpoint.id, outcomes, now)
        return attempts

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
        self, endpoint: Endpoint, sender: Sender, events: Sequence[LoggedEvent], stored_none: bool
    ) -> list[Attempt]:
        """Send new events (or store them behind their saga's undelivered one, unless `stored_none`
        says there is none); store the failures."""
        by_saga: dict[str, list[LoggedEvent]] = {}
        for event in events:
            by_saga.setdefault(event.saga_id, []).append(event)
        waiting = set() if stored_none else await self._store.unfinished_sagas(endpoint.id, by_saga)
        stored: list[Delivery] = []
        attempts: list[Attempt] = []

        async def send(saga_events: list[LoggedEvent]) -> None:
            for index, event in enumerate(saga_events):
                attempt = None
                if event.saga_id not in waiting:
                    attempt = await sender.send(event.event_id, event.payload())
                    attempts.append(attempt)
                    if attempt.ok:
                        continue
                stored.append(self._failed(endpoint, event, attempt))
                stored.extend(self._failed(endpoint, later, None) for later in saga_events[index + 1 :])
                return

        await _each_bounded(send, by_saga.values())
        if stored:
            self._none_stored_until = 0.0
            await self._store.store(stored)
        return attempts

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
        if (succeeded and since is not None) or (attempts and not succeeded and since is None):
            since = await self._store.note_health(endpoint.id, succeeded, now)
        if since is None or now - since < self._policy.disable_after:
            return
        reason = f"no delivery succeeded since {since.isoformat()}"
        if (last := await self._store.last_error(endpoint.id)) is not None:
            reason += f"; the last attempt: {last}"
        await self._store.disable(endpoint.id, reason, now)
        log.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)


async def _each_bounded(work: Callable[[T], Awaitable[None]], items: Iterable[T]) -> None:
    """`work(item)` for every item, at most CONCURRENCY at once."""
    slots = asyncio.Semaphore(CONCURRENCY)

    async def run(item: T) -> None:
        async with slots:
            await work(item)

    async with asyncio.TaskGroup() as group:  # one failing cancels the others: none left unowned
        for item in items:
            group.create_task(run(item))


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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), POLL_S)
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
                reader=wiring.reader,
                hub=wiring.hub,
                batch=BATCH,
                poll_s=POLL_S,
                gather_s=GATHER_S,
                lease_ttl=wiring.lease_ttl,
            )
            supervisor = Supervisor()
            supervisor.keep(relay.name, relay.run)
            self._running[endpoint_id] = supervisor
