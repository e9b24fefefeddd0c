"""The saga's state, the fold of its journal (fold.py): its status, its steps' history, its shipments,
and why it turned back or waits for an operator."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.model.saga.shipments import Shipment, ShipmentStatus
from domain.model.saga.steps import Step
from domain.model.values import OrderLine, Pick


class SagaStatus(enum.Enum):
    ORDER_CREATED = "ORDER_CREATED"
    STOCK_RESERVING = "STOCK_RESERVING"
    STOCK_RESERVED = "STOCK_RESERVED"
    ORDER_CONFIRMING = "ORDER_CONFIRMING"
    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    SHIPMENT_CREATING = "SHIPMENT_CREATING"
    COMPLETED = "COMPLETED"
    STOCK_RESERVATION_FAILED = "STOCK_RESERVATION_FAILED"
    COMPENSATING = "COMPENSATING"
    FAILED = "FAILED"
    # A compensation (or the shipment, which comes after the point of no return) kept failing after
    # all its retries: an operator has to look. It is never silently reported as FAILED.
    NEEDS_ATTENTION = "NEEDS_ATTENTION"


TERMINAL_STATUSES = frozenset({SagaStatus.COMPLETED, SagaStatus.FAILED})
# Settled: nothing more happens on its own, the saga finished or waits for an operator. What a
# request awaiting an outcome waits for.
SETTLED_STATUSES = TERMINAL_STATUSES | {SagaStatus.NEEDS_ATTENTION}


class FailureKind(enum.Enum):
    """Why a saga turned back or waits for an operator, as a stable kind (the reason's text varies)."""

    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"  # the reservation found too little stock
    REJECTED = "REJECTED"  # another participant refused the step: retrying cannot help
    UNAVAILABLE = "UNAVAILABLE"  # the participant kept failing transiently, all attempts used
    TIMED_OUT = "TIMED_OUT"  # the step passed its deadline, on its last attempt
    ABORTED = "ABORTED"  # an operator turned the saga back
    CANCELLED = "CANCELLED"  # the customer cancelled the order


class StepStatus(enum.Enum):
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    # The saga was turned back (aborted, cancelled) before this attempt finished; with local
    # participants an attempt takes effect only with its journal entry, so it had no effect.
    ABANDONED = "ABANDONED"


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The history of one step, as the saga's readers see it."""

    step: Step
    status: StepStatus
    attempts: int
    started_at: datetime
    finished_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class SagaState:
    saga_id: str
    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    status: SagaStatus
    version: int
    started_at: datetime
    updated_at: datetime
    done: tuple[Step, ...] = ()
    compensations: tuple[Step, ...] = ()
    step: Step | None = None
    attempt: int = 0
    deadline: datetime | None = None
    # What the latest attempt was given (its deadline less its start): a deadline that passes after a
    # restart under other settings is reported as what it was.
    attempt_timeout: timedelta = timedelta(0)
    retry_at: datetime | None = None
    # Why the saga turned back (and failed, once compensated).
    failure_reason: str | None = None
    # Why an operator is needed, while the saga is parked.
    attention_reason: str | None = None
    # The step whose failure turned the saga back; None when an operator or the customer did.
    failed_step: Step | None = None
    # The kinds of `failure_reason` and `attention_reason`, and of the last step that gave up.
    failure_kind: FailureKind | None = None
    attention_kind: FailureKind | None = None
    gave_up_on: FailureKind | None = None
    picks: tuple[Pick, ...] = ()
    # The first shipment (what `Order.shipment` shows), once CREATE_SHIPMENT succeeded.
    shipment_id: str | None = None
    history: tuple[StepRecord, ...] = ()
    # When the last of its shipments left the warehouse; None until all of them have.
    dispatched_at: datetime | None = None
    # One per warehouse the picks come from, from the start of CREATE_SHIPMENT; in warehouse code
    # order. A journal written before shipments were per warehouse folds into one (see fold.py).
    shipments: tuple[Shipment, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_settled(self) -> bool:
        """Nothing more happens on its own: finished, or waiting for an operator."""
        return self.status in SETTLED_STATUSES

    @property
    def is_compensating(self) -> bool:
        """Turning back: compensations remain (running, retrying or parked)."""
        return bool(self.compensations)

    @property
    def is_dispatched(self) -> bool:
        """Every shipment left the warehouse."""
        return self.dispatched_at is not None

    @property
    def any_dispatched(self) -> bool:
        """Some shipment (perhaps all) left the warehouse: the order can no longer be cancelled."""
        return any(s.status is ShipmentStatus.DISPATCHED for s in self.shipments)

    def shipment(self, shipment_id: str) -> Shipment | None:
        return next((s for s in self.shipments if s.shipment_id == shipment_id), None)

    def shipments_for(self, step: Step) -> tuple[Shipment, ...]:
        """The shipments a CREATE_SHIPMENT attempt sends a command for (those not answered yet, and
        not awaited) or a CANCEL_SHIPMENT attempt does (those created or awaited, which may exist)."""
        if step is Step.CREATE_SHIPMENT:
            return tuple(s for s in self.shipments if s.status is ShipmentStatus.REQUESTED and not s.awaited)
        return tuple(s for s in self.shipments if s.may_be_held)

    @property
    def awaiting_warehouse(self) -> bool:
        """CREATE_SHIPMENT is in flight and every shipment it still needs was accepted by its remote
        warehouse: the saga waits for their answers, until the step's deadline."""
        requested = [s for s in self.shipments if s.status is ShipmentStatus.REQUESTED]
        return (
            self.step is Step.CREATE_SHIPMENT
            and self.retry_at is None
            and bool(requested)
            and all(s.awaited for s in requested)
        )

    @property
    def order_cancelled(self) -> bool:
        return any(r.step is Step.CANCEL_ORDER and r.status is StepStatus.SUCCEEDED for r in self.history)

    @property
    def next_wakeup(self) -> datetime | None:
        """When the saga must be looked at again without any outside message (a durable timer)."""
        return self.retry_at or self.deadline
