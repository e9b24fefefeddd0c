"""What the orchestrator needs from the world, as Protocols; persistence and api provide them."""

from __future__ import annotations

import asyncio
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


class OrdersPort(Protocol):
    async def create_order(self, command: StepCommand) -> None: ...
    async def confirm_order(self, command: StepCommand) -> Outcome: ...
    async def cancel_order(self, command: StepCommand) -> Outcome: ...


class InventoryPort(Protocol):
    async def reserve_stock(self, command: StepCommand) -> Outcome: ...
    async def release_stock(self, command: StepCommand) -> Outcome: ...


class ShipmentsPort(Protocol):
    async def create_shipment(self, command: StepCommand) -> Outcome: ...


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

    async def find_placement(self, idempotency_key: str) -> Placement | None: ...


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
    sagas' work in the same commit). If `work` raises, none of its writes are kept."""

    async def run(self, work: Callable[[Transaction], Awaitable[T]]) -> T: ...

    def submit(self, work: Callable[[Transaction], Awaitable[T]]) -> asyncio.Future[T]:
        """Queue `work` and answer at once with the future of its result, set once it has committed.
        The work goes ahead whether or not anyone awaits the future (await it through
        `asyncio.shield`): cancelling the future itself withdraws work that has not begun."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...
    async def sleep_until(self, when: datetime) -> None: ...


class ParticipantGate(Protocol):
    """Consulted before each call to a participant, outside any transaction: it may delay the call
    (a slow participant) or raise ParticipantUnavailable (a failing one)."""

    async def admit(self, participant: Participant) -> None: ...


class ParticipantUnavailable(Exception):
    pass


class ConcurrencyConflict(Exception):
    """Someone else appended to the saga's journal first."""


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used for a different request."""
