"""Faults staged on purpose (`ordersaga serve --enable-fault-injection`): the participant gate through
which a user makes a participant slow or failing at run time, to watch timeouts, retries and
compensations happen; and, on PostgreSQL, commits whose answer is lost, to watch what a client is
told when its write's outcome is unknown. Faults live in memory only, so a restart always runs
clean."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.model.saga import Participant
from domain.ports import Clock, ParticipantUnavailable
from persistence.write.commit_faults import commit_losing_answer


@dataclass(frozen=True, slots=True)
class Fault:
    """Every call waits `delay` first; then the next `fail_next` calls fail, and after them each call
    fails with probability `failure_rate`. The shipment participant also refuses every shipment from
    the warehouses in `rejected_warehouses` (a business refusal, which turns the saga back)."""

    delay: timedelta = timedelta(0)
    fail_next: int = 0
    failure_rate: float = 0.0
    rejected_warehouses: frozenset[str] = frozenset()

    @property
    def is_staged(self) -> bool:
        return bool(self.delay or self.fail_next or self.failure_rate or self.rejected_warehouses)


class FaultInjector:
    """A ParticipantGate with faults set per participant while the service runs. `seed` makes the
    failures drawn for `failure_rate` repeatable."""

    def __init__(self, clock: Clock, seed: int | None = None) -> None:
        self._clock = clock
        self._random = random.Random(seed)
        self._faults: dict[Participant, Fault] = {}
        self.lost_commit_answers = 0

    @property
    def faults(self) -> dict[Participant, Fault]:
        """The staged faults, in participant order."""
        return {p: self._faults[p] for p in Participant if p in self._faults}

    def stage(self, participant: Participant, fault: Fault) -> None:
        """Replace the participant's fault; a fault of all zeros makes it healthy again."""
        if fault.is_staged:
            self._faults[participant] = fault
        else:
            self._faults.pop(participant, None)

    def clear(self) -> None:
        self._faults.clear()
        self.lost_commit_answers = 0

    async def commit(self, conn: AsyncConnection) -> None:
        """How the transaction runner commits on PostgreSQL: the next `lost_commit_answers` commits
        lose their answer (persistence/write/commit_faults.py), the rest commit as usual."""
        if self.lost_commit_answers:
            self.lost_commit_answers -= 1
            await commit_losing_answer(conn)
        else:
            await conn.commit()

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        fault = self._faults.get(participant)
        if fault is None or warehouse_code not in fault.rejected_warehouses:
            return None
        return f"warehouse {warehouse_code} refused the shipment (staged fault)"

    async def admit(self, participant: Participant) -> None:
        fault = self._faults.get(participant)
        if fault is not None and fault.delay:
            await self._clock.sleep_until(self._clock.now() + fault.delay)
            # Faults may have changed while the call waited: it meets the ones staged now.
            fault = self._faults.get(participant)
        if fault is None:
            return
        if fault.fail_next:
            self.stage(participant, replace(fault, fail_next=fault.fail_next - 1))
            raise ParticipantUnavailable(f"{participant.value} failed (staged fault)")
        if fault.failure_rate and self._random.random() < fault.failure_rate:
            raise ParticipantUnavailable(f"{participant.value} failed (staged failure rate)")
