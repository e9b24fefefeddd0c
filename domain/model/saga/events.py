"""The saga's events: the facts its journal records, of which its state is the fold (fold.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from domain.model.saga.steps import Step
from domain.model.values import OrderLine, Pick

# Each event's `type_name` is the name the journal stores it under (persistence/codec.py) and that
# command ids are made of: it stays what it is, whatever the class is called, so a journal written by an
# earlier release reads back (tests/golden) and a participant recognises a command it has seen.


@dataclass(frozen=True, slots=True)
class SagaStarted:
    """The order was placed and created, in the same transaction that journals this event."""

    type_name: ClassVar[str] = "SagaStarted"

    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class StepStarted:
    type_name: ClassVar[str] = "StepStarted"

    step: Step
    attempt: int
    deadline: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    type_name: ClassVar[str] = "StepSucceeded"

    step: Step
    at: datetime
    picks: tuple[Pick, ...] = ()
    # The order's one shipment, in journals written before shipments were per warehouse (since then
    # each warehouse's is journalled by ShipmentCreated): None in new journals.
    shipment_id: str | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    """An attempt failed. `retry_at` is when the next attempt may start; None means no more attempts."""

    type_name: ClassVar[str] = "StepFailed"

    step: Step
    attempt: int
    reason: str
    transient: bool
    retry_at: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class StepTimedOut:
    type_name: ClassVar[str] = "StepTimedOut"

    step: Step
    attempt: int
    reason: str
    retry_at: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CompensationStarted:
    type_name: ClassVar[str] = "CompensationStarted"

    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SagaParked:
    type_name: ClassVar[str] = "SagaParked"

    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SagaRetried:
    """An operator sent a parked saga on: the step it was parked at gets a fresh series of attempts."""

    type_name: ClassVar[str] = "SagaRetried"

    at: datetime
    # Who asked for it (the subject of the caller's token); None in journals written before it was kept.
    actor: str | None = None
    # The role they asked in (an `Actor`'s); None in journals written before it was kept.
    actor_role: str | None = None


@dataclass(frozen=True, slots=True)
class SagaAborted:
    """An operator turned the saga back: the step in flight is abandoned, what was done is compensated."""

    type_name: ClassVar[str] = "SagaAborted"

    reason: str
    at: datetime
    # Who asked for it (the subject of the caller's token); None in journals written before it was kept.
    actor: str | None = None
    # The role they asked in (an `Actor`'s); None in journals written before it was kept.
    actor_role: str | None = None


CUSTOMER_CANCELLED = "cancelled by the customer"


@dataclass(frozen=True, slots=True)
class CustomerCancelled:
    """The customer (or an operator for it) cancelled the order before any of its shipments was
    dispatched; it is compensated like a failure, for `reason`."""

    type_name: ClassVar[str] = "CustomerCancelled"

    at: datetime
    reason: str
    # Who asked for it (the subject of the caller's token); None in journals written before it was kept.
    actor: str | None = None
    # The role they asked in (an `Actor`'s); None in journals written before it was kept.
    actor_role: str | None = None


@dataclass(frozen=True, slots=True)
class ShipmentDispatched:
    """A warehouse picked and sent one of the completed saga's shipments: its picks left their
    sections."""

    type_name: ClassVar[str] = "ShipmentDispatched"

    shipment_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ShipmentCreated:
    """One warehouse created its shipment: a remote warehouse (its `reference` for it, as it sent it),
    or the built-in one in an attempt at CREATE_SHIPMENT that did not succeed as a whole (a
    StepSucceeded says every shipment requested was created, with no event per shipment)."""

    type_name: ClassVar[str] = "ShipmentCreated"

    shipment_id: str
    at: datetime
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class ShipmentAccepted:
    """A remote warehouse took its shipment's command (HTTP 202) and will report the outcome later
    (`reportShipmentOutcome`): the step waits for it, durably, until its deadline."""

    type_name: ClassVar[str] = "ShipmentAccepted"

    shipment_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ShipmentRouted:
    """The shipment's commands go to the remote warehouse service at `service_url`: journalled with
    the CREATE_SHIPMENT attempt that first sends it there, before its command leaves. Its retries and
    its cancel then go to that service whatever the catalog says later, and from then on the shipment
    may exist there (an answer may be lost on the way back) until its cancel says otherwise."""

    type_name: ClassVar[str] = "ShipmentRouted"

    shipment_id: str
    service_url: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ShipmentRejected:
    """One warehouse refused its shipment: retrying cannot help, so the saga turns back."""

    type_name: ClassVar[str] = "ShipmentRejected"

    shipment_id: str
    reason: str
    at: datetime


SagaEvent = (
    SagaStarted
    | StepStarted
    | StepSucceeded
    | StepFailed
    | StepTimedOut
    | CompensationStarted
    | SagaParked
    | SagaRetried
    | SagaAborted
    | CustomerCancelled
    | ShipmentDispatched
    | ShipmentCreated
    | ShipmentRejected
    | ShipmentAccepted
    | ShipmentRouted
)

# Every way a saga starts turning back: a step that gave up, an operator's abort, the customer's cancel.
TURNING_BACK = (CompensationStarted, SagaAborted, CustomerCancelled)
