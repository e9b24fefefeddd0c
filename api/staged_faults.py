"""Faults staged on purpose (`ordersaga serve --enable-fault-injection`): the participant gate through
which a user makes a participant slow or failing at run time, to watch timeouts, retries and
compensations happen; and, on PostgreSQL, commits whose answer is lost, to watch what a client is
told when its write's outcome is unknown.

Participant faults hold for the whole deployment: they are kept in the database
(persistence/staged_faults.py), each process reads them every REFRESH_S, and a failure staged with
`failNext` is counted off there by whichever process fails the call, so "fail the next 3" fails 3
calls in all, however many processes serve. A process that starts clears them: a start runs clean,
for the whole deployment. Lost commit answers are staged on the process that is asked, for its own
next commits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from api.supervision import LocalChanges, every
from domain.model.saga import Participant
from domain.ports import Clock, ParticipantUnavailable
from persistence.staged_faults import StagedFault, StagedFaultStore
from persistence.write.commit_faults import commit_losing_answer

# How often a process reads the faults staged in the deployment: how soon a fault staged on one
# process holds on the others.
REFRESH_S = 0.5


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
    """A ParticipantGate with faults set per participant while the service runs, shared through
    `store` with the deployment's other processes (without one, this process's alone). `seed` makes
    the failures drawn for `failure_rate` repeatable. The methods that read or write the store raise
    what the database raises."""

    def __init__(self, clock: Clock, seed: int | None = None, store: StagedFaultStore | None = None) -> None:
        self._clock = clock
        self._random = random.Random(seed)
        self._store = store
        self._faults: dict[Participant, Fault] = {}  # as last read from the store
        self._changes = LocalChanges()
        self.lost_commit_answers = 0

    @property
    def faults(self) -> dict[Participant, Fault]:
        """The staged faults, in participant order, as this process knows them."""
        return {p: self._faults[p] for p in Participant if p in self._faults}

    async def refresh(self) -> None:
        """Read the faults staged in the deployment. A read that a change made here overtook (a
        fault staged or cleared while it ran) is dropped: it holds what the store held before that
        change, and would bring back, say, a cleared 60-second delay until the next read."""
        if self._store is not None:
            staged = await self._changes.unless_overtaken(self._store.all)
            if staged is not None:
                self._faults = {Participant(name): _fault(stored) for name, stored in staged.items()}

    async def keep_current(self) -> None:
        """Refresh every REFRESH_S, until cancelled: the background task of a service; a database
        busy or away keeps the faults read before (api/supervision.py `every`)."""
        await every(REFRESH_S, self.refresh, "staged faults")

    async def stage(self, participant: Participant, fault: Fault) -> None:
        """Replace the participant's fault; a fault of all zeros makes it healthy again."""
        if self._store is not None:
            await self._store.put(participant.value, _stored(fault) if fault.is_staged else None)
        self._remember(participant, fault)
        self._changes.made()

    async def clear(self) -> None:
        if self._store is not None:
            await self._store.clear()
        self._faults.clear()
        self._changes.made()
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
        if fault.fail_next and await self._take_failure(participant, fault):
            raise ParticipantUnavailable(f"{participant.value} failed (staged fault)")
        if fault.failure_rate and self._random.random() < fault.failure_rate:
            raise ParticipantUnavailable(f"{participant.value} failed (staged failure rate)")

    async def _take_failure(self, participant: Participant, fault: Fault) -> bool:
        """Count one of the participant's staged failures off, in the store when there is one:
        whether one was left for this call (another process may have failed the last)."""
        if self._store is None:
            left: int | None = fault.fail_next - 1
        else:
            left = await self._store.take_failure(participant.value)
        self._remember(participant, replace(fault, fail_next=left or 0))
        return left is not None

    def _remember(self, participant: Participant, fault: Fault) -> None:
        # Not a change a read could undo: a failure counted off here is counted off in the store
        # too, which decides the next one (a read from before it says one more is left, no worse).
        if fault.is_staged:
            self._faults[participant] = fault
        else:
            self._faults.pop(participant, None)


def _fault(stored: StagedFault) -> Fault:
    delay = timedelta(milliseconds=stored.delay_ms)
    return Fault(delay, stored.fail_next, stored.failure_rate, frozenset(stored.rejected_warehouses))


def _stored(fault: Fault) -> StagedFault:
    delay_ms = int(fault.delay / timedelta(milliseconds=1))
    return StagedFault(delay_ms, fault.fail_next, fault.failure_rate, sorted(fault.rejected_warehouses))
