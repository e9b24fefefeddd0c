"""Sagas staged on a real database with a clock that moves only when told: every outcome, every
timestamp and every duration is exact, and no test waits for real time to pass."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from api.service import Service
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant, SagaPolicy
from domain.model.values import OrderLine, StorageCondition
from domain.ports import OutcomeUnknown, ParticipantUnavailable
from persistence.write import catalog
from tests.service.fakes import FakeClock

POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=10),
    confirm_timeout=timedelta(seconds=5),
    shipment_timeout=timedelta(seconds=5),
    compensation_timeout=timedelta(seconds=5),
    max_attempts=3,
    retry_backoff=timedelta(seconds=1),
)
SETTLED = ("COMPLETED", "FAILED", "NEEDS_ATTENTION")


@dataclass
class StageGate:
    """Refuses a participant's next calls, breaks on them (an unexpected error, not a refusal), loses
    their outcome, or holds them until their step's deadline gives up."""

    refusals: dict[Participant, int] = field(default_factory=dict)
    breaks: dict[Participant, int] = field(default_factory=dict)
    # Calls whose commit's outcome is lost, as a connection dropped while it committed would.
    losses: dict[Participant, int] = field(default_factory=dict)
    holds: dict[Participant, int] = field(default_factory=dict)
    held: int = 0
    # Warehouses whose shipments are refused.
    refusing: set[str] = field(default_factory=set)

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        return f"warehouse {warehouse_code} refused the shipment" if warehouse_code in self.refusing else None

    async def admit(self, participant: Participant) -> None:
        if self.breaks.get(participant, 0) > 0:
            self.breaks[participant] -= 1
            raise RuntimeError(f"the {participant.value} link broke")
        if self.losses.get(participant, 0) > 0:
            self.losses[participant] -= 1
            raise OutcomeUnknown("the connection was lost as the work committed")
        if self.refusals.get(participant, 0) > 0:
            self.refusals[participant] -= 1
            raise ParticipantUnavailable(f"{participant.value} is down")
        if self.holds.get(participant, 0) > 0:
            self.holds[participant] -= 1
            self.held += 1
            try:
                await asyncio.Event().wait()
            finally:
                self.held -= 1


@dataclass
class Stage:
    svc: Service
    clock: FakeClock
    gate: StageGate

    async def stock(self, quantity: int = 10) -> None:
        async def load(conn) -> None:  # type: ignore[no-untyped-def]
            await catalog.register_warehouse(conn, "W1", "One", [("A", StorageCondition.AMBIENT)])
            await catalog.register_product(conn, "SKU-1", "Thing", StorageCondition.AMBIENT)
            await catalog.receive_stock(conn, "SKU-1", "W1", "A", quantity, self.clock.now())

        await self.svc.write(load)

    async def route(self, warehouse_code: str, service_url: str | None) -> None:
        """Give the warehouse a remote service (None: the built-in warehouse again), in the catalog and
        in the process's view of it."""

        async def change(conn) -> None:  # type: ignore[no-untyped-def]
            assert await catalog.update_warehouse(conn, warehouse_code, {"service_url": service_url}) == []

        await self.svc.write(change)
        self.svc.warehouses.learn(warehouse_code, service_url)

    async def place(self, quantity: int, customer: str = "c-1") -> str:
        placed = await self.svc.orchestrator.place_order(
            PlaceOrder(customer, (OrderLine("SKU-1", quantity),))
        )
        return placed.saga_id

    async def order(self, quantity: int, customer: str = "c-1") -> str:
        """Place an order and run its saga, moving the clock only while the saga waits on it."""
        saga_id = await self.place(quantity, customer)
        await self.run_until(saga_id, *SETTLED)
        return saga_id

    async def run_until(self, saga_id: str, *statuses: str) -> None:
        for _ in range(2000):
            row = await self.svc.read.saga(saga_id)
            assert row is not None
            if row.status in statuses:
                return
            wakeup, now = row.next_wakeup_at, self.clock.now()
            # Only a saga that sleeps on the clock (a retry's pause, a held call's deadline) is moved on;
            # one that is merely busy is left to finish, so no deadline passes under it by accident.
            if wakeup and wakeup > now and (row.steps[-1]["status"] == "RETRYING" or self.gate.held):
                await self.clock.advance((wakeup - now).total_seconds())
            else:
                await asyncio.sleep(0.005)
        raise AssertionError(f"saga {saga_id} did not reach {statuses}")

    async def outcomes(self) -> dict[str, str]:
        """One saga of each kind, one after the other, a minute apart; their ids by name."""
        sagas = {}
        for name, quantity, setup in [
            ("completed", 2, {}),
            ("retried", 1, {"refusals": {Participant.INVENTORY: 1}}),
            ("shortage", 50, {}),
            ("confirm_refused", 3, {"refusals": {Participant.ORDERS: 3}}),
            ("reserve_timed_out", 1, {"holds": {Participant.INVENTORY: 1}}),
            ("parked", 1, {"refusals": {Participant.SHIPMENT: 3}}),
        ]:
            self.gate.refusals.update(setup.get("refusals", {}))
            self.gate.holds.update(setup.get("holds", {}))
            sagas[name] = await self.order(quantity, customer=f"customer-{name}")
            await self.clock.advance(60)
        return sagas


def make_stage(database_url: str, **settings: Any) -> Stage:
    """A stage over `database_url`, its service's other `settings` as given."""
    clock, gate = FakeClock(), StageGate()
    svc = Service(Settings(database_url=database_url, policy=POLICY, **settings), clock=clock, gate=gate)
    return Stage(svc, clock, gate)


async def start_stage(database_url: str, **settings: Any) -> Stage:
    stage = make_stage(database_url, **settings)
    await stage.svc.start()
    return stage
