"""The composition root: the one place where persistence is wired into the domain's ports."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import Authenticator
from api.clock import SystemClock
from api.hub import TransitionHub
from api.logs import log_change
from api.prometheus import PrometheusMetrics
from api.rate_limits import DEFAULT_MUTATION_LIMITS, MutationRateLimit
from api.settings import Settings
from api.staged_faults import FaultInjector
from domain.orchestrator import Orchestrator
from domain.ports import Clock, ParticipantGate
from persistence.analytics import SagaAnalytics
from persistence.database import is_sqlite, make_engine, make_writer_engine
from persistence.db import Db
from persistence.metrics import StoreMetrics
from persistence.migrate import upgrade
from persistence.queries import ReadModel
from persistence.runner import GroupCommitRunner
from persistence.serving import claim_database
from persistence.transaction import SqlTransaction

log = logging.getLogger("ordersaga")
T = TypeVar("T")


class Service:
    """Everything a running ordersaga holds: engines, the transaction runner, the orchestrator, the
    read model, the hub that tells live subscribers about commits. `start` claims the database (shared
    with other servers; raises persistence.serving.DatabaseInUse while a command that needs it alone
    runs), migrates and resumes unfinished sagas; `stop` lets go of all of it."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, gate: ParticipantGate | None = None
    ) -> None:
        self.settings = settings
        self.metrics = StoreMetrics()
        sqlite = is_sqlite(settings.database_url)
        self._writer = make_writer_engine(settings.database_url)
        pool = (
            {}
            if settings.read_pool_size is None
            else {"pool_size": settings.read_pool_size, "max_overflow": 0}
        )
        self._reader = make_engine(
            settings.database_url, writer=False, pool_timeout=settings.pool_timeout.total_seconds(), **pool
        )
        lanes = settings.commit_lanes or (1 if sqlite else 2)
        self.runner = GroupCommitRunner(
            self._writer, lambda conn: SqlTransaction(conn, self.metrics), self.metrics, lanes=lanes
        )
        clock = clock or SystemClock()
        # Staged faults, when enabled, are the participants' gate; `gate` is for tests' own.
        self.faults = FaultInjector(clock, settings.fault_seed) if settings.fault_injection else None
        self.orchestrator = Orchestrator(self.runner, clock, settings.policy, gate or self.faults)
        self.prometheus = PrometheusMetrics(self.metrics, lambda: self.orchestrator.running)
        self.orchestrator.add_listener(self.prometheus.observe)
        self.orchestrator.add_listener(log_change)
        if settings.otel:
            from api.tracing import install_tracing

            self.orchestrator.add_listener(install_tracing())
        self.hub = TransitionHub()
        self.orchestrator.add_listener(self.hub.on_change)
        self.read = ReadModel(self._reader)
        self.analytics = SagaAnalytics(self._reader)
        self.authenticator = Authenticator(settings.auth)
        limits = settings.mutation_limits or (
            None if self.authenticator.development else DEFAULT_MUTATION_LIMITS
        )
        self.mutation_rate_limit = MutationRateLimit(limits) if limits else None
        self.ready = False
        self._claim = contextlib.AsyncExitStack()

    async def start(self) -> None:
        if self.authenticator.development:
            log.warning(
                "development mode: no authentication is configured, so every caller acts as admin; "
                "configure --auth-secret-file or --auth-jwks-url before serving anyone else"
            )
        await self._claim.enter_async_context(claim_database(self.settings.database_url, exclusive=False))
        await upgrade(self._writer)
        await self.runner.start()
        if self.settings.demo:
            from api.demo import load_demo_catalog

            await load_demo_catalog(self)
        unfinished = await self.read.unfinished_saga_ids()
        self.orchestrator.resume(unfinished)
        if unfinished:
            log.info("resumed %d unfinished sagas", len(unfinished))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.orchestrator.stop()
        await self.runner.stop()
        if isinstance(self._writer, AsyncEngine):
            await self._writer.dispose()
        else:
            self._writer.dispose()
        await self._reader.dispose()
        await self._claim.aclose()

    async def is_ready(self) -> bool:
        """Started, and the database answers."""
        if not self.ready:
            return False
        try:
            await self.read.ping()
        except Exception:
            log.warning("not ready: the database does not answer", exc_info=True)
            return False
        return True

    async def write(self, work: Callable[[Db], Awaitable[T]]) -> T:
        """Run an administrative write (catalog, stock) through the same transaction runner as sagas."""
        return await self.runner.run_on_connection(work)
