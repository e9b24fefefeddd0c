"""The composition root: the one place where persistence is wired into the domain's ports."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from api.access.auth import Authenticator
from api.access.rate_limits import DEFAULT_MUTATION_LIMITS, MutationRateLimit
from api.clock import SystemClock
from api.graphql.journal import updates_after
from api.graphql.subscriptions import live_transitions
from api.live.hub import Committed, TransitionHub
from api.live.journal_tail import JournalTail
from api.live.pacing import Pacer
from api.observability.logs import log_change
from api.observability.prometheus import PrometheusMetrics
from api.outbound.addresses import Reach
from api.outbound.sender_process import SenderProcess
from api.outbound.signing import Signer
from api.outbound.warehouse import WarehouseService
from api.outbound.webhooks import DeliveryPolicy, Webhooks, Wiring
from api.settings import Settings
from api.staged_faults import FaultInjector
from api.supervision import Supervisor
from domain.model.problems import Problem
from domain.model.saga import SETTLED_STATUSES
from domain.orchestration.attempts import until_settled
from domain.orchestration.orchestrator import Orchestrator
from domain.orchestration.takeover import keep_leases, lease_round
from domain.ports import Clock, KeyedRequest, ParticipantGate
from persistence.connection import Db, EngineWriter, Writer
from persistence.database import is_sqlite, make_engine, make_writer_engine
from persistence.fleet.commit_listener import CommitListener
from persistence.fleet.leases import Fleet, LeaseBook
from persistence.fleet.notifications import CommitNotice
from persistence.fleet.relays import Relays
from persistence.metrics import StoreMetrics
from persistence.migrate import upgrade
from persistence.read.analytics import SagaAnalytics
from persistence.read.catalog import CatalogReads
from persistence.read.event_log import head
from persistence.read.reader import ReadEngine
from persistence.read.sagas import SagaPages, SagaReads, Worklist
from persistence.read.timeline import TimelineReads
from persistence.serving import claim_database
from persistence.staged_faults import StagedFaultStore
from persistence.webhooks import WebhookStore
from persistence.write.group_commit import GroupCommitRunner
from persistence.write.requests import at_most_once
from persistence.write.transaction import SqlTransaction

if TYPE_CHECKING:
    from api.outbound.stream import RelayStatus

log = logging.getLogger("ordersaga")
# The services started with `freeze_start_up` and not yet stopped in this process: the collector's
# frozen objects are given back when the last one stops (gc.freeze and gc.unfreeze act on the whole
# process).
_freezing: weakref.WeakSet[Service] = weakref.WeakSet()
# The collector's first-generation threshold while they run, and its thresholds before the first
# started, given back when the last stops. The requests in flight make and free objects by the
# thousand; at the default of 700 the collector went through theirs about once every two sagas,
# to free next to nothing (docs/performance.md, lever 27).
SERVING_FIRST_GENERATION_THRESHOLD = 5000
_thresholds_before: list[tuple[int, int, int]] = []
T = TypeVar("T")


class Service:
    """Everything a running ordersaga holds: engines, the transaction runner, the orchestrator, the
    read model, the hub that tells live subscribers about commits. `start` claims the database (shared
    with other servers on PostgreSQL, alone on SQLite; raises persistence.serving.DatabaseInUse while
    that cannot be had), migrates, resumes unfinished sagas and, with `settings.freeze_start_up`,
    freezes what it made out of the garbage collector and collects less often while it serves;
    `stop` lets go of all of it.

    On PostgreSQL the process is one of a fleet that may share the database: it drives only the
    sagas it holds leases for (taking over expired ones in lease rounds), and hears the others'
    commits through LISTEN. On SQLite it is the only process and drives every saga."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, gate: ParticipantGate | None = None
    ) -> None:
        self.settings = settings
        self.metrics = StoreMetrics()
        sqlite = is_sqlite(settings.database_url)
        self._writer = make_writer_engine(settings.database_url)
        options: dict[str, Any] = (
            {}
            if settings.read_pool_size is None
            else {"pool_size": settings.read_pool_size, "max_overflow": 0}
        )
        if not sqlite:
            # Each statement its own transaction: no BEGIN and ROLLBACK around a read, one round trip
            # rather than three (docs/performance.md, lever 32). As consistent as a transaction at
            # PostgreSQL's default READ COMMITTED, in which every statement takes a snapshot of its
            # own (a server set to a stricter default would have given the readers of several
            # statements, the analytics and the webhooks' due deliveries, one snapshot, which
            # neither needs); the service's reads write nothing and take no lock that should
            # outlive their statement.
            options["isolation_level"] = "AUTOCOMMIT"
        # A read waits as long for a connection as for a table lock (on PostgreSQL), then is answered
        # SERVICE_UNAVAILABLE: neither a busy pool nor an operator's LOCK TABLE holds a request long.
        self._reader = make_engine(
            settings.database_url,
            writer=False,
            read_lock_timeout_ms=max(1, round(settings.pool_timeout.total_seconds() * 1000)),  # 0: no limit
            pool_timeout=settings.pool_timeout.total_seconds(),
            **options,
        )
        lanes = settings.commit_lanes or (1 if sqlite else 2)
        fleet = None if sqlite else Fleet(settings.instance, settings.lease_ttl)
        clock = clock or SystemClock()
        self.clock = clock
        # The writes outside the sagas' own (relay positions, webhook deliveries, staged faults). On
        # SQLite they join the commit lanes' one writer: the database takes one at a time, and a
        # second connection would only wait for its lock, or hold it while its event loop is busy.
        # On PostgreSQL they have a small pool of their own, shared by every relay and the staged
        # faults (it grows past two connections when they write at once), so that delivering never
        # takes a connection the sagas' commits or the API's reads wait for.
        self._outbound = None if sqlite else make_engine(settings.database_url, pool_size=2)
        writer: Writer = self._write_in_lanes if self._outbound is None else EngineWriter(self._outbound)
        # Staged faults, when enabled, are the participants' gate (`gate` is for tests' own) and, on
        # PostgreSQL, how the runner commits.
        self.faults = None
        if settings.fault_injection:
            self.faults = FaultInjector(clock, settings.fault_seed, StagedFaultStore(self._reader, writer))
        self.leases = None
        if fleet is not None:
            assert isinstance(self._writer, AsyncEngine)
            self.leases = LeaseBook(self._writer, fleet)
        leases = self.leases
        self.runner = GroupCommitRunner(
            self._writer,
            lambda conn: SqlTransaction(conn, self.metrics, leases),
            self.metrics,
            lanes=lanes,
            admission_timeout=settings.write_timeout.total_seconds(),
            commit=None if self.faults is None else self.faults.commit,
            prepared=settings.fast_paths,
        )
        secret = settings.warehouse_service_secret
        self.read_engine = ReadEngine(self._reader)
        self.read = SagaReads(self.read_engine)
        self.pages = SagaPages(self.read_engine)
        self.timeline = TimelineReads(self.read_engine)
        self.worklist = Worklist(self.read_engine)
        self.catalog = CatalogReads(self.read_engine)
        self.warehouses = WarehouseService(
            self.catalog.warehouse_service_urls,
            settings.warehouse_service_url,
            None if secret is None else Signer(secret),
            Reach(private=settings.allow_private_warehouse_urls, loopback=not settings.auth.configured),
        )
        self.orchestrator = Orchestrator(
            self.runner,
            clock,
            settings.policy,
            gate or self.faults,
            leases=self.leases,
            warehouses=self.warehouses,
            chain_placement=sqlite,
        )
        if self.leases is not None:
            self.orchestrator.add_listener(self.leases.on_change)
        self.prometheus = PrometheusMetrics(
            self.metrics, lambda: self.orchestrator.running, settings.instance
        )
        self.orchestrator.add_listener(self.prometheus.observe)
        self.warehouses.add_listener(self.prometheus.observe_command)
        self.orchestrator.add_listener(log_change)
        if settings.otel:
            from api.observability.tracing import install_tracing

            self.orchestrator.add_listener(install_tracing())
        self.hub = TransitionHub()
        self.orchestrator.add_listener(self.hub.on_change)
        self.live = live_transitions(self.timeline, self.read)
        self.tail = JournalTail(
            partial(updates_after, self.timeline, self.read), partial(head, self.read_engine), self.hub
        )
        # Every live message waits its turn here, so that a fan-out leaves requests their share.
        self.pacer = Pacer()
        self.analytics = SagaAnalytics(self._reader)
        self.authenticator = Authenticator(settings.auth)
        limits = settings.mutation_limits or (
            None if self.authenticator.development else DEFAULT_MUTATION_LIMITS
        )
        self.mutation_rate_limit = MutationRateLimit(limits, settings.rate_limit_storage) if limits else None
        self._sender = SenderProcess()
        self.webhooks = Webhooks(
            Wiring(
                store=WebhookStore(self._reader, writer),
                relays=Relays(writer, fleet),
                reads=self.read_engine,
                hub=self.hub,
                sender=self._sender,
                clock=clock,
                policy=_delivery_policy(settings, development=self.authenticator.development),
                lease_ttl=None if fleet is None else fleet.lease_ttl,
            )
        )
        self.commit_listener = None
        if fleet is not None:
            self.commit_listener = CommitListener(
                settings.database_url, self._reader, fleet.instance, clock, self._committed_elsewhere
            )
        self.stream = None
        if settings.stream is not None:
            # Imported here only: the NATS client took about 30 ms of every start, stream or none.
            from api.outbound.stream import StreamRelay

            self.stream = StreamRelay(
                settings.stream,
                self.read_engine,
                Relays(writer, fleet),
                self.hub,
                # A third of the lease time: standing by, it takes over soon after a holder died.
                poll_s=settings.lease_ttl.total_seconds() / 3,
                instance=settings.instance,
                lease_ttl=None if fleet is None else fleet.lease_ttl,
            )
            self.prometheus.watch_relay(self.stream)
        self._reactions: set[asyncio.Task[None]] = set()
        self.background = Supervisor()
        self.ready = False
        self._claim = contextlib.AsyncExitStack()

    async def start(self) -> None:
        if self.authenticator.development:
            log.warning(
                "development mode: no authentication is configured, so every caller acts as admin; "
                "configure --auth-secret-file or --auth-jwks-url before serving anyone else"
            )
        # On SQLite the one process drives every saga, so a server needs the file alone.
        alone = is_sqlite(self.settings.database_url)
        await self._claim.enter_async_context(claim_database(self.settings.database_url, exclusive=alone))
        await upgrade(self._writer)
        await self.runner.start()
        # Before any saga is driven: which warehouses are remote decides how their steps run.
        await self.warehouses.refresh()
        self.background.keep("warehouse-urls", self.warehouses.keep_current)
        self.background.keep("journal-tail", self.tail.run)
        if self.faults is not None:
            # A start runs clean, for the whole deployment: staged faults are for watching a bad day
            # live, not something a restart should carry on.
            await self.faults.clear()
            self.background.keep("staged-faults", self.faults.keep_current)
        if self.settings.demo:
            from api.demo import load_demo_catalog

            await load_demo_catalog(self)
        if self.leases is not None and self.commit_listener is not None:
            # Listening before serving: a subscription opened here must not miss a commit made there.
            self.background.keep("commit-listener", self.commit_listener.run)
            await self.commit_listener.listening.wait()
            await lease_round(self.leases, self.orchestrator)
            leases, ttl = self.leases, self.leases.fleet.lease_ttl
            self.background.keep("lease-rounds", lambda: keep_leases(leases, self.orchestrator, ttl))
        else:
            unfinished = await self.worklist.unfinished_saga_ids()
            self.orchestrator.resume(unfinished)
            if unfinished:
                log.info("resumed %d unfinished sagas", len(unfinished))
        if self.stream is not None:
            self.background.keep("stream-relay", self.stream.run)
        self.background.keep("webhooks", self.webhooks.run)
        if self.settings.freeze_start_up:
            # What start-up made (modules, the schema, the catalog) lives as long as the process:
            # frozen out of the collector's generations, it is no longer scanned by every full
            # collection, which under load took about a tenth of the server's CPU
            # (docs/performance.md, lever 13). Collected first: start-up's garbage (migrations,
            # cycles awaiting a full collection) would otherwise be frozen with it, out of the
            # collector's reach while the service runs.
            gc.collect()
            gc.freeze()
            if not _thresholds_before:
                _thresholds_before.append(gc.get_threshold())
            gc.set_threshold(SERVING_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
            _freezing.add(self)
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self in _freezing:
            _freezing.discard(self)
            if not _freezing:  # what the starts froze may be garbage once no such service runs
                gc.unfreeze()
                gc.set_threshold(*_thresholds_before.pop())
        await self.background.stop()
        await self._sender.stop()
        await self.orchestrator.stop()
        if self.leases is not None:
            with contextlib.suppress(Exception):
                await self.leases.hand_back()  # the others take over now, not a lease time later
        await self.runner.stop()
        if isinstance(self._writer, AsyncEngine):
            await self._writer.dispose()
        else:
            self._writer.dispose()
        await self.warehouses.close()
        if self._outbound is not None:
            await self._outbound.dispose()
        await self.read_engine.close()
        await self._reader.dispose()
        await self._claim.aclose()

    @property
    def subscribers(self) -> int:
        """Live subscriptions open in this process: `sagaUpdates` and `sagaFeed` alike."""
        return self.hub.subscribers + self.tail.followers

    def _committed_elsewhere(self, notice: CommitNotice) -> None:
        """Another process committed to a saga: its subscribers here hear of it; a saga driven here
        restarts from its journal (an operator's intervention landed there); one that settled
        answers the requests here awaiting its outcome (a placement replayed there)."""
        self.hub.publish(Committed(notice.saga_id, notice.first, notice.last, notice.status))
        reactions = []
        if self.leases is not None and self.leases.holds(notice.saga_id):
            reactions.append(self.orchestrator.redrive(notice.saga_id))
        if notice.status in SETTLED_STATUSES and self.orchestrator.watching(notice.saga_id):
            reactions.append(self.orchestrator.settled_elsewhere(notice.saga_id))
        for reaction in reactions:
            task = asyncio.create_task(reaction)
            self._reactions.add(task)
            task.add_done_callback(self._reactions.discard)

    async def relays(self) -> list[RelayStatus]:
        """Where each outbound relay stands. A relay behind does not make the process unready: the
        events wait in the journal, and taking the process out of a load balancer would not help them
        out (docs/decisions/0021-event-stream.md). Raises what the database raises."""
        return [] if self.stream is None else [await self.stream.status()]

    async def is_ready(self) -> bool:
        """Started, every background task running, and the database answers."""
        if not self.ready or self.background.down:
            return False
        try:
            await self.read.ping()
        except Exception:
            log.warning("not ready: the database does not answer", exc_info=True)
            return False
        return True

    async def write(self, work: Callable[[Db], Awaitable[T]], lock_order: str = "") -> T:
        """Run an administrative write (catalog, stock) through the same transaction runner as sagas.
        `lock_order`: the first SKU whose stock it may lock, so that it takes its row locks in the
        order the sagas' reservations do (see domain.ports.TransactionRunner)."""
        return await self.runner.run_on_connection(work, lock_order)

    def _write_in_lanes(self, work: Callable[[Db], Awaitable[T]]) -> Awaitable[T]:
        """The writes outside the sagas' own, on SQLite: a `Writer` through the commit lanes (bound
        late: the runner is made after the staged faults, whose commit it uses)."""
        return self.runner.run_on_connection(work)

    async def write_once(
        self,
        request: KeyedRequest | None,
        work: Callable[[Db], Awaitable[list[Problem]]],
        lock_order: str,
    ) -> list[Problem] | None:
        """An administrative write that says why it changed nothing (its problems), under `request`'s
        idempotency key (persistence/write/requests.py): None when the key replayed an earlier
        request, which did the work. A commit whose answer was lost is found out by running it again
        under the key (domain/orchestration/attempts.py). Raises IdempotencyKeyReused; OutcomeUnknown
        when the answer was lost and there is no key, or running it again under the key failed too;
        StillContended."""

        async def attempt() -> list[Problem] | None:
            now = self.clock.now()
            return await self.write(lambda conn: at_most_once(conn, request, now, work), lock_order)

        return await until_settled(attempt, "an administrative write", keyed=request is not None)


def _delivery_policy(settings: Settings, *, development: bool) -> DeliveryPolicy:
    """How webhooks are sent under `settings`; in `development` mode (no authentication) to loopback
    URLs too."""
    return DeliveryPolicy(
        connect_timeout=settings.webhook_connect_timeout,
        timeout=settings.webhook_timeout,
        retry_for=settings.webhook_retry_for,
        disable_after=settings.webhook_disable_after or settings.webhook_retry_for,
        keep_succeeded=settings.webhook_keep_succeeded,
        reach=Reach(private=settings.allow_private_webhook_urls, loopback=development),
    )
