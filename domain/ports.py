"""What the orchestrator needs from the world, as Protocols; persistence and api provide them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from domain.model import OrderLine, Pick
from domain.saga import Outcome, Participant, SagaChange, SagaEvent

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StepCommand:
    """One command to a participant. `command_id` is derived from the saga and the step, never from the
    attempt, so a participant that sees it twice (a retry, a replay after a crash) acts once."""

    command_id: str
    saga_id: str
    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    picks: tuple[Pick, ...]
    reservation_id: str
    at: datetime
    # The saga's shipment, once created: what a dispatch or a cancellation of it acts on.
    shipment_id: str | None = None


class OrdersPort(Protocol):
    async def create_order(self, command: StepCommand) -> None: ...
    async def confirm_order(self, command: StepCommand) -> Outcome: ...
    async def cancel_order(self, command: StepCommand) -> Outcome: ...
    async def ship_order(self, command: StepCommand) -> None: ...


class InventoryPort(Protocol):
    async def reserve_stock(self, command: StepCommand) -> Outcome: ...
    async def release_stock(self, command: StepCommand) -> Outcome: ...
    async def dispatch_stock(self, command: StepCommand) -> None:
        """The reservation's picks leave their sections: on-hand and reserved both go down."""
        ...


class ShipmentsPort(Protocol):
    async def create_shipment(self, command: StepCommand) -> Outcome: ...
    async def cancel_shipment(self, command: StepCommand) -> Outcome: ...
    async def dispatch_shipment(self, command: StepCommand) -> None: ...


@dataclass(frozen=True, slots=True)
class Placement:
    """The saga an idempotency key is bound to, and a fingerprint of the request that bound it."""

    idempotency_key: str
    fingerprint: str
    saga_id: str
    order_id: str


class SagaStore(Protocol):
    async def load(self, saga_id: str) -> list[SagaEvent]: ...

    async def append(self, change: SagaChange, placement: Placement | None) -> None:
        """Journal `change.events` after `change.before.version` and project `change.after` (and each
        event's status, on the timeline). `placement` binds an idempotency key to a new saga. If the
        saga moved on meanwhile, or another request bound the key, the transaction fails with
        ConcurrencyConflict (here or when it commits)."""
        ...

    async def find_placement(
        self, idempotency_key: str, unscoped_key: str | None = None, customer_id: str | None = None
    ) -> Placement | None:
        """The placement bound to `idempotency_key`, or, first, the one release 0.1.0 bound to
        `unscoped_key` (the client's key as sent) for an order of `customer_id`: that release did not
        scope keys to callers, so its keys belong to their order's customer (migration 0007). None
        when neither is bound."""
        ...


class Transaction(Protocol):
    """The participants and the saga store, all inside one database transaction."""

    @property
    def orders(self) -> OrdersPort: ...
    @property
    def inventory(self) -> InventoryPort: ...
    @property
    def shipments(self) -> ShipmentsPort: ...
    @property
    def sagas(self) -> SagaStore: ...


class TransactionRunner(Protocol):
    """Runs `work` in a transaction and returns its result once committed (possibly alongside other
    sagas' work in the same commit). If `work` raises, none of its writes are kept.

    Work that shares a commit runs in ascending `lock_order`. Work that takes stock passes the first
    SKU it may lock, so that two commits being written at once (two lanes, two processes) take
    their rows in one order and wait for each other, rather than each holding what the other
    wants until a lock timeout breaks the cycle."""

    async def run(self, work: Callable[[Transaction], Awaitable[T]], lock_order: str = "") -> T: ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    async def sleep_until(self, when: datetime) -> None: ...


class ParticipantGate(Protocol):
    """Consulted before each call to a participant, outside any transaction: it may delay the call
    (a slow participant) or raise ParticipantUnavailable (a failing one)."""

    async def admit(self, participant: Participant) -> None: ...


class SagaLeases(Protocol):
    """Which running sagas this process may drive. With several processes over one database, each
    running saga is leased to one of them at a time; a process that does not hold a saga's lease (it
    never had it, or lost it to a pause) must not write to it."""

    def holds(self, saga_id: str) -> bool: ...


class ParticipantUnavailable(Exception):
    pass


class ConcurrencyConflict(Exception):
    """Someone else appended to the saga's journal first."""


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used for a different request."""
