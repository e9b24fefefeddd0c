"""What the orchestrator needs from the world, as Protocols; persistence and api provide them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from domain.model.saga import Outcome, Participant, SagaChange, SagaEvent, Step
from domain.model.values import OrderLine, Pick

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
    # A command for one shipment (creating, cancelling, dispatching it) names it and its warehouse,
    # and carries that warehouse's picks; `command_id` then names the warehouse too.
    shipment_id: str | None = None
    warehouse_code: str | None = None


class OrdersPort(Protocol):
    async def create_order(self, command: StepCommand) -> None: ...
    async def confirm_order(self, command: StepCommand) -> Outcome: ...
    async def cancel_order(self, command: StepCommand) -> Outcome: ...
    async def ship_order(self, command: StepCommand, completely: bool) -> None:
        """One of the order's shipments was dispatched: the order is SHIPPED if it was the last
        (`completely`), PARTIALLY_SHIPPED if others remain."""
        ...


class InventoryPort(Protocol):
    async def reserve_stock(self, command: StepCommand) -> Outcome: ...
    async def release_stock(self, command: StepCommand) -> Outcome: ...
    async def dispatch_stock(self, command: StepCommand) -> None:
        """The shipment's picks (`command.picks`) leave their sections: on-hand and reserved both go
        down; the reservation is never released after that."""
        ...


class ShipmentsPort(Protocol):
    async def create_shipment(self, command: StepCommand) -> Outcome: ...
    async def cancel_shipment(self, command: StepCommand) -> Outcome: ...
    async def dispatch_shipment(self, command: StepCommand) -> None: ...


class RemoteWarehouses(Protocol):
    """The warehouses served by a remote warehouse service, and commands sent to them over the
    network, outside any transaction: a warehouse may answer late, twice or not at all, so a command
    keeps its id on every attempt and after a restart."""

    def url_of(self, warehouse_code: str) -> str | None:
        """The remote service the warehouse's shipments are routed to when their step starts, as
        the catalog said when last read (at most a second ago, while the service runs); None: the
        built-in warehouse."""
        ...

    async def send(
        self, step: Step, command: StepCommand, service_url: str | None, timeout_s: float
    ) -> Outcome:
        """Send CREATE_SHIPMENT's or CANCEL_SHIPMENT's command for one shipment (`command.picks` are
        its picks) to `service_url`, the service the shipment was routed to (None, for a journal
        written before routes were: the warehouse's service of the moment), and answer what the
        warehouse said, within `timeout_s` seconds: Succeeded (created or cancelled), Accepted (it
        reports later), Rejected (a business refusal) or Unavailable (a transient failure, with the
        Retry-After asked for). Never raises for what the network or the warehouse does."""
        ...


@dataclass(frozen=True, slots=True)
class Placement:
    """The saga an idempotency key is bound to, and a fingerprint of the request that bound it."""

    idempotency_key: str
    fingerprint: str
    saga_id: str
    order_id: str


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A request sent under an idempotency key (already scoped to its caller), with a fingerprint of
    what it asks: a later request under the key is a replay if its fingerprint is the same."""

    idempotency_key: str
    fingerprint: str

    @classmethod
    def of(cls, idempotency_key: str, operation: str, **fields: object) -> KeyedRequest:
        """The fingerprint is SHA-256 (hex) of the operation's name and `fields` as canonical JSON
        (sorted keys, no spaces): equal requests give equal text, and no field can pass for another."""
        canonical = json.dumps({"operation": operation, **fields}, sort_keys=True, separators=(",", ":"))
        return cls(idempotency_key, hashlib.sha256(canonical.encode()).hexdigest())


class RequestKeys(Protocol):
    """The idempotency keys of requests that took effect, bound in the transaction of their effect."""

    async def bound(self, idempotency_key: str) -> str | None:
        """The fingerprint of the request the key is bound to; None if it is bound to none."""
        ...

    async def bind(self, request: KeyedRequest, at: datetime) -> None:
        """Bind the request's key to it. If another transaction bound the key first, the transaction
        fails with ConcurrencyConflict (here or when it commits): run it again to find that one."""
        ...


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
    @property
    def requests(self) -> RequestKeys: ...


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

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        """Why the participant refuses its command for `warehouse_code` (a shipment), or None to send
        it. Asked inside the step's transaction, once per shipment, so it does not wait."""
        ...


class SagaLeases(Protocol):
    """Which running sagas this process may drive. With several processes over one database, each
    running saga is leased to one of them at a time; a process that does not hold a saga's lease (it
    never had it, or lost it to a pause) must not write to it."""

    def holds(self, saga_id: str) -> bool: ...


class LeaseRounds(SagaLeases, Protocol):
    """The rounds that keep this process's leases (domain/orchestration/takeover.py)."""

    async def renew(self) -> tuple[set[str], set[str]]:
        """Extend every lease this process owns; answers the sagas it holds and those it lost."""
        ...

    async def claim(self) -> set[str]:
        """Take over leases that expired, whoever owned them; answers their sagas."""
        ...


class ParticipantUnavailable(Exception):
    pass


class ConcurrencyConflict(Exception):
    """Someone else appended to the saga's journal (or bound the idempotency key) first."""


class StillContended(Exception):
    """Work met a ConcurrencyConflict on each of its attempts and gave up: nothing of it was kept,
    so the same request may be sent again later."""


class OutcomeUnknown(Exception):
    """The connection was lost while the transaction committed: it may have committed or not, and
    nobody can tell from here. Only a lookup of its effect (a key it bound) can say which."""


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used for a different request."""
