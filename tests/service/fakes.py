"""In-memory stand-ins for the orchestrator's ports: participants that record the commands they get,
a transaction runner that undoes a failed transaction, and a clock that moves only when told."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from domain.model.saga import Outcome, Participant, Rejected, SagaChange, SagaEvent, Succeeded
from domain.model.values import Pick
from domain.ports import (
    ConcurrencyConflict,
    KeyedRequest,
    ParticipantUnavailable,
    Placement,
    StepCommand,
)

T = TypeVar("T")
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self._now = now
        self._sleepers: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((when, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, waking every sleeper that is due, and let the woken work run."""
        self._now += timedelta(seconds=seconds)
        due = [(w, f) for w, f in self._sleepers if w <= self._now]
        self._sleepers = [(w, f) for w, f in self._sleepers if w > self._now]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        await settle()


async def settle(rounds: int = 50) -> None:
    """Let every ready task run until the system is quiet (no real time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


@dataclass
class World:
    """Everything the participants and the journal hold."""

    stock: dict[str, int] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)
    reservations: dict[str, tuple[Pick, ...]] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)
    dispatched: set[str] = field(default_factory=set)
    # By shipment id: its order, and its status.
    shipments: dict[str, str] = field(default_factory=dict)
    shipment_statuses: dict[str, str] = field(default_factory=dict)
    journal: dict[str, list[SagaEvent]] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    request_keys: dict[str, str] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)
    # Scripted misbehaviour: an exception to raise on a participant method's next calls.
    failures: dict[str, list[Exception]] = field(default_factory=dict)

    def called(self, method: str, command: StepCommand) -> None:
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)
        self.commands.append((method, command.command_id))

    def command_names(self) -> list[str]:
        return [method for method, _ in self.commands]


class FakeOrders:
    def __init__(self, world: World) -> None:
        self.world = world

    async def create_order(self, command: StepCommand) -> None:
        self.world.called("create_order", command)
        self.world.orders[command.order_id] = "PENDING"

    async def confirm_order(self, command: StepCommand) -> Outcome:
        self.world.called("confirm_order", command)
        if self.world.orders[command.order_id] == "CANCELLED":
            return Rejected("cancelled")
        self.world.orders[command.order_id] = "CONFIRMED"
        return Succeeded()

    async def cancel_order(self, command: StepCommand) -> Outcome:
        self.world.called("cancel_order", command)
        self.world.orders[command.order_id] = "CANCELLED"
        return Succeeded()

    async def ship_order(self, command: StepCommand, completely: bool) -> None:
        self.world.called("ship_order", command)
        self.world.orders[command.order_id] = "SHIPPED" if completely else "PARTIALLY_SHIPPED"


class FakeInventory:
    def __init__(self, world: World) -> None:
        self.world = world

    async def reserve_stock(self, command: StepCommand) -> Outcome:
        self.world.called("reserve_stock", command)
        if command.reservation_id in self.world.reservations:
            return Succeeded(picks=self.world.reservations[command.reservation_id])
        short = [x for x in command.lines if self.world.stock.get(x.sku, 0) < x.quantity]
        if short:
            return Rejected("insufficient stock: " + ", ".join(x.sku for x in short))
        picks = tuple(Pick("W1", "S1", x.sku, x.quantity) for x in command.lines)
        for line in command.lines:
            self.world.stock[line.sku] -= line.quantity
        self.world.reservations[command.reservation_id] = picks
        return Succeeded(picks=picks)

    async def release_stock(self, command: StepCommand) -> Outcome:
        self.world.called("release_stock", command)
        picks = self.world.reservations.get(command.reservation_id, ())
        if picks and command.reservation_id not in self.world.released:
            self.world.released.add(command.reservation_id)
            for pick in picks:
                self.world.stock[pick.sku] += pick.quantity
        return Succeeded()

    async def dispatch_stock(self, command: StepCommand) -> None:
        self.world.called("dispatch_stock", command)
        self.world.dispatched.add(command.reservation_id)


class FakeShipments:
    def __init__(self, world: World) -> None:
        self.world = world

    async def create_shipment(self, command: StepCommand) -> Outcome:
        self.world.called("create_shipment", command)
        assert command.shipment_id is not None
        self.world.shipments.setdefault(command.shipment_id, command.order_id)
        self.world.shipment_statuses.setdefault(command.shipment_id, "CREATED")
        return Succeeded()

    async def cancel_shipment(self, command: StepCommand) -> Outcome:
        self.world.called("cancel_shipment", command)
        assert command.shipment_id is not None
        if self.world.shipment_statuses.get(command.shipment_id) == "DISPATCHED":
            return Rejected("dispatched")
        self.world.shipment_statuses[command.shipment_id] = "CANCELLED"
        return Succeeded()

    async def dispatch_shipment(self, command: StepCommand) -> None:
        self.world.called("dispatch_shipment", command)
        assert command.shipment_id is not None
        self.world.shipment_statuses[command.shipment_id] = "DISPATCHED"


class FakeSagaStore:
    def __init__(self, world: World) -> None:
        self.world = world

    async def load(self, saga_id: str) -> list[SagaEvent]:
        return list(self.world.journal.get(saga_id, []))

    async def find_placement(
        self, idempotency_key: str, unscoped_key: str | None = None, customer_id: str | None = None
    ) -> Placement | None:
        return self.world.placements.get(idempotency_key)  # the world holds no 0.1.0 placements

    async def append(self, change: SagaChange, placement: Placement | None) -> None:
        journal = self.world.journal.setdefault(change.after.saga_id, [])
        if len(journal) != change.first_sequence - 1:
            raise ConcurrencyConflict(change.after.saga_id)
        journal.extend(change.events)
        if placement is not None:
            self.world.placements[placement.idempotency_key] = placement


class FakeRequestKeys:
    def __init__(self, world: World) -> None:
        self.world = world

    async def bound(self, idempotency_key: str) -> str | None:
        return self.world.request_keys.get(idempotency_key)

    async def bind(self, request: KeyedRequest, at: datetime) -> None:
        if request.idempotency_key in self.world.request_keys:
            raise ConcurrencyConflict(request.idempotency_key)
        self.world.request_keys[request.idempotency_key] = request.fingerprint


class FakeTransaction:
    def __init__(self, world: World) -> None:
        self.orders = FakeOrders(world)
        self.inventory = FakeInventory(world)
        self.shipments = FakeShipments(world)
        self.sagas = FakeSagaStore(world)
        self.requests = FakeRequestKeys(world)


class FakeRunner:
    """Runs work at once; if it raises, the world is put back as it was (a rollback)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.transactions = 0

    async def run(self, work: Callable[[Any], Awaitable[T]], lock_order: str = "") -> T:
        self.transactions += 1
        snapshot = copy.deepcopy(self.world.__dict__)
        try:
            return await work(FakeTransaction(self.world))
        except BaseException:
            failures = self.world.failures
            self.world.__dict__.update(snapshot)
            self.world.failures = failures
            raise


class ScriptedGate:
    """Makes a participant slow (by fake-clock seconds) or unavailable on its next calls."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: dict[Participant, float] = {}
        self.refusals: dict[Participant, int] = {}

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        return None  # every warehouse takes its shipments

    async def admit(self, participant: Participant) -> None:
        if self.refusals.get(participant, 0) > 0:
            self.refusals[participant] -= 1
            raise ParticipantUnavailable(f"{participant.value} is down")
        delay = self.delays.get(participant, 0)
        if delay:
            await self.clock.sleep_until(self.clock.now() + timedelta(seconds=delay))
