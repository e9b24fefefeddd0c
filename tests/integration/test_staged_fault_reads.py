"""Faults staged in the deployment's store, as a process reads them on a schedule: a read that a
change made in the process overtook does not undo that change (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.clock import SystemClock
from api.staged_faults import Fault, FaultInjector
from domain.model.saga import Participant
from persistence.connection import EngineWriter
from persistence.database import make_engine
from persistence.staged_faults import StagedFault, StagedFaultStore

SLOW = Fault(delay=timedelta(seconds=60))
FAILING = Fault(fail_next=2)


class HeldReads(StagedFaultStore):
    """The store, whose reads wait, once done, until the test lets them answer."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, EngineWriter(engine))
        self.read = asyncio.Event()
        self.answer = asyncio.Event()

    async def all(self) -> dict[str, StagedFault]:
        staged = await super().all()
        self.read.set()
        await self.answer.wait()
        return staged


@pytest.mark.parametrize("change", ["cleared", "staged"])
async def test_a_read_that_a_change_overtook_does_not_undo_it(database_url: str, change: str) -> None:
    engine = make_engine(database_url)
    try:
        store = HeldReads(engine)
        faults = FaultInjector(SystemClock(), store=store)
        store.answer.set()
        await faults.stage(Participant.ORDERS, SLOW)
        store.answer.clear()

        refreshing = asyncio.create_task(faults.refresh())
        await store.read.wait()  # it has read the 60-second delay
        if change == "cleared":
            await faults.clear()
            expected = {}
        else:
            await faults.stage(Participant.ORDERS, FAILING)
            expected = {Participant.ORDERS: FAILING}
        store.answer.set()
        await refreshing

        assert faults.faults == expected
        await faults.refresh()  # a read begun after the change finds it in the store
        assert faults.faults == expected
    finally:
        await engine.dispose()
