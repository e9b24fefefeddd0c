"""A saga driver that keeps meeting the same error backs off and says so once per backoff, and an
intervention that cannot be decided starts no driver."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from domain.model.interventions import Actor
from domain.orchestration.orchestrator import Orchestrator
from tests.service.fakes import FakeClock
from tests.service.harness import POLICY

T = TypeVar("T")


class DatabaseAway:
    """A transaction runner whose every transaction fails, as with the database gone."""

    def __init__(self) -> None:
        self.transactions = 0

    async def run(self, work: Callable[[Any], Awaitable[T]], lock_order: str = "") -> T:
        self.transactions += 1
        raise ConnectionRefusedError("the database is away")


async def test_a_driver_that_keeps_failing_backs_off_and_logs_one_traceback_then_a_line_per_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ordersaga")
    runner = DatabaseAway()
    orchestrator = Orchestrator(runner, FakeClock(), POLICY)
    orchestrator.resume(["saga-1"])
    await asyncio.sleep(0.5)  # jittered backoffs of up to 0.05, 0.1, 0.2 s, then 0.4 s
    await orchestrator.stop()
    records = [r for r in caplog.records if "saga-1" in r.getMessage()]
    assert 3 <= runner.transactions <= 5
    assert len(records) == runner.transactions
    assert [r.exc_info is not None for r in records] == [True] + [False] * (len(records) - 1)
    assert all("next try in" in r.getMessage() for r in records[1:])


async def test_an_intervention_that_fails_on_an_id_with_no_driver_starts_none() -> None:
    orchestrator = Orchestrator(DatabaseAway(), FakeClock(), POLICY)
    for intervene in (orchestrator.retry, orchestrator.cancel_order):
        with pytest.raises(ConnectionRefusedError):
            await intervene("no-such-saga", Actor("operator-1", "operator"))
    with pytest.raises(ConnectionRefusedError):
        await orchestrator.abort("no-such-saga", "why", Actor("operator-1", "operator"))
    assert orchestrator.running == 0
