"""The composition root: the one place where persistence is wired into the domain's ports."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from api.clock import SystemClock
from api.hub import TransitionHub
from api.settings import Settings
from domain.orchestrator import Orchestrator
from domain.ports import Clock, ParticipantGate
from persistence.database import is_sqlite, make_engine
from persistence.metrics import StoreMetrics
from persistence.migrate import upgrade
from persistence.queries import ReadModel
from persistence.runner import GroupCommitRunner
from persistence.transaction import SqlTransaction

log = logging.getLogger("ordersaga")
T = TypeVar("T")


class Service:
    """Everything a running ordersaga holds: engines, the transaction runner, the orchestrator, the
    read model, the hub that tells live subscribers about commits. `start` migrates and resumes
    unfinished sagas; `stop` lets go of all of it."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, gate: ParticipantGate | None = None
    ) -> None:
        self.settings = settings
        self.metrics = StoreMetrics()
        sqlite = is_sqlite(settings.database_url)
        self._writer = make_engine(settings.database_url, writer=True)
        self._reader = make_engine(settings.database_url, writer=False)
        lanes = settings.commit_lanes or (1 if sqlite else 2)
        self.runner = GroupCommitRunner(
            self._writer, lambda conn: SqlTransaction(conn, self.metrics), self.metrics, lanes=lanes
        )
        self.orchestrator = Orchestrator(self.runner, clock or SystemClock(), settings.policy, gate)
        self.hub = TransitionHub()
        self.orchestrator.add_listener(self.hub.on_change)
        self.read = ReadModel(self._reader)
        self.ready = False

    async def start(self) -> None:
        await upgrade(self._writer)
        await self.runner.start()
        if self.settings.demo:
            from api.demo import load_demo_catalog

            await load_demo_catalog(self)
        unfinished = await self.read.unfinished_saga_ids()
        await self.orchestrator.resume(unfinished)
        if unfinished:
            log.info("resumed %d unfinished sagas", len(unfinished))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.orchestrator.stop()
        await self.runner.stop()
        await self._writer.dispose()
        await self._reader.dispose()

    async def write(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run an administrative write (catalog, stock) through the same transaction runner as sagas."""
        return await self.runner.run_on_connection(work)
