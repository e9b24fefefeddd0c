"""The orchestrator wired to the in-memory fakes, with the default saga policy."""

from __future__ import annotations

from domain.model.commands import PlaceOrder
from domain.model.saga import SagaChange, SagaPolicy, SagaState, SagaStatus, fold
from domain.model.values import OrderLine
from domain.orchestration.orchestrator import Orchestrator
from tests.service.fakes import FakeClock, FakeRunner, ScriptedGate, World, settle

POLICY = SagaPolicy()


class Harness:
    def __init__(self, stock: int = 10) -> None:
        self.world = World(stock={"SKU-1": stock})
        self.clock = FakeClock()
        self.gate = ScriptedGate(self.clock)
        self.seen: list[SagaChange] = []
        self.orchestrator = Orchestrator(
            FakeRunner(self.world), self.clock, POLICY, self.gate, listeners=[self.seen.append]
        )

    async def place(self, quantity: int = 2, key: str | None = None) -> str:
        placed = await self.orchestrator.place_order(
            PlaceOrder("customer-1", (OrderLine("SKU-1", quantity),), key)
        )
        await settle()
        return placed.saga_id

    def saga(self, saga_id: str) -> SagaState:
        return fold(saga_id, self.world.journal[saga_id])

    def statuses(self, saga_id: str) -> list[SagaStatus]:
        """The status after each event of the saga's journal."""
        events = self.world.journal[saga_id]
        return [fold(saga_id, events[: n + 1]).status for n in range(len(events))]
