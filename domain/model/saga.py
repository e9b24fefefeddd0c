"""The order saga as data plus pure functions.

`evolve` folds one event into the saga's state; `next_action` says what the orchestrator does next
from a state and the time; `on_outcome` and `on_timeout` turn what a participant did into events.
Nothing here performs I/O, so every state and message pair is a plain unit test.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, assert_never

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


class Step(enum.Enum):
    CREATE_ORDER = "CREATE_ORDER"
    RESERVE_STOCK = "RESERVE_STOCK"
    CONFIRM_ORDER = "CONFIRM_ORDER"
    CREATE_SHIPMENT = "CREATE_SHIPMENT"
    RELEASE_STOCK = "RELEASE_STOCK"
    CANCEL_ORDER = "CANCEL_ORDER"
    CANCEL_SHIPMENT = "CANCEL_SHIPMENT"


class FailureKind(enum.Enum):
    """Why a saga turned back or waits for an operator, as a stable kind (the reason's text varies)."""

    INSUFFICIENT_STOCK = "INSUFFICIENT_STOCK"  # the reservation found too little stock
    REJECTED = "REJECTED"  # another participant refused the step: retrying cannot help
    UNAVAILABLE = "UNAVAILABLE"  # the participant kept failing transiently, all attempts used
    TIMED_OUT = "TIMED_OUT"  # the step passed its deadline, on its last attempt
    ABORTED = "ABORTED"  # an operator turned the saga back
    CANCELLED = "CANCELLED"  # the customer cancelled the order


class Participant(enum.Enum):
    ORDERS = "ORDERS"
    INVENTORY = "INVENTORY"
    SHIPMENT = "SHIPMENT"


FORWARD_STEPS = (Step.CREATE_ORDER, Step.RESERVE_STOCK, Step.CONFIRM_ORDER, Step.CREATE_SHIPMENT)

# What undoes a forward step. Confirming needs no undo of its own: cancelling the order undoes it.
# The shipments are undone each (one command per shipment created), when a warehouse refuses its
# shipment or the customer cancels before any was dispatched.
COMPENSATION_OF = {
    Step.CREATE_ORDER: Step.CANCEL_ORDER,
    Step.RESERVE_STOCK: Step.RELEASE_STOCK,
    Step.CREATE_SHIPMENT: Step.CANCEL_SHIPMENT,
}

PARTICIPANT_OF = {
    Step.CREATE_ORDER: Participant.ORDERS,
    Step.CONFIRM_ORDER: Participant.ORDERS,
    Step.CANCEL_ORDER: Participant.ORDERS,
    Step.RESERVE_STOCK: Participant.INVENTORY,
    Step.RELEASE_STOCK: Participant.INVENTORY,
    Step.CREATE_SHIPMENT: Participant.SHIPMENT,
    Step.CANCEL_SHIPMENT: Participant.SHIPMENT,
}

_RUNNING_STATUS = {
    Step.RESERVE_STOCK: SagaStatus.STOCK_RESERVING,
    Step.CONFIRM_ORDER: SagaStatus.ORDER_CONFIRMING,
    Step.CREATE_SHIPMENT: SagaStatus.SHIPMENT_CREATING,
}
_DONE_STATUS = {
    Step.CREATE_ORDER: SagaStatus.ORDER_CREATED,
    Step.RESERVE_STOCK: SagaStatus.STOCK_RESERVED,
    Step.CONFIRM_ORDER: SagaStatus.ORDER_CONFIRMED,
    Step.CREATE_SHIPMENT: SagaStatus.COMPLETED,
}

# Steps whose timeout is retried rather than compensated: they are idempotent and come after the
# order was confirmed (the shipment) or are themselves the way back (the compensations).
_RETRY_ON_TIMEOUT = frozenset(
    {Step.CREATE_SHIPMENT, Step.RELEASE_STOCK, Step.CANCEL_ORDER, Step.CANCEL_SHIPMENT}
)


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    reserve_timeout: timedelta = timedelta(seconds=10)
    confirm_timeout: timedelta = timedelta(seconds=5)
    shipment_timeout: timedelta = timedelta(seconds=5)
    compensation_timeout: timedelta = timedelta(seconds=5)
    max_attempts: int = 3
    retry_backoff: timedelta = timedelta(seconds=1)

    def timeout(self, step: Step) -> timedelta:
        return {
            Step.RESERVE_STOCK: self.reserve_timeout,
            Step.CONFIRM_ORDER: self.confirm_timeout,
            Step.CREATE_SHIPMENT: self.shipment_timeout,
        }.get(step, self.compensation_timeout)

    def backoff(self, failed_attempt: int) -> timedelta:
        return self.retry_backoff * failed_attempt


# ---------------------------------------------------------------------------------------------- events

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


# ----------------------------------------------------------------------------------------------- state


class StepStatus(enum.Enum):
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    # The saga was turned back (aborted, cancelled) before this attempt finished; with local
    # participants an attempt takes effect only with its journal entry, so it had no effect.
    ABANDONED = "ABANDONED"


class ShipmentStatus(enum.Enum):
    """A shipment's life, as the saga knows it from the warehouse's answers."""

    # Its command is sent (or about to be), or a remote warehouse accepted it (`accepted_at`): the
    # warehouse has not answered yet.
    REQUESTED = "REQUESTED"
    CREATED = "CREATED"  # the warehouse holds it, to be picked and sent
    REJECTED = "REJECTED"  # the warehouse refused it
    CANCELLED = "CANCELLED"  # withdrawn with its order (or never created, its order turned back)
    DISPATCHED = "DISPATCHED"  # picked and sent: its stock left the warehouse


@dataclass(frozen=True, slots=True)
class Shipment:
    """One warehouse's shipment of the order: the picks the order takes from that warehouse."""

    shipment_id: str
    warehouse_code: str
    picks: tuple[Pick, ...]
    status: ShipmentStatus
    requested_at: datetime
    created_at: datetime | None = None
    dispatched_at: datetime | None = None
    # Why the warehouse refused it; None unless REJECTED.
    reason: str | None = None
    # When a remote warehouse accepted its command to answer later; None once answered, and for
    # the built-in warehouse, which answers at once.
    accepted_at: datetime | None = None
    # What a remote warehouse calls it.
    reference: str | None = None
    # A remote warehouse accepted its command at least once (a later attempt may be on the wire).
    was_accepted: bool = False
    # The remote warehouse service its commands go to (ShipmentRouted); None: the built-in warehouse,
    # or a journal written before routes were journalled, whose accepted shipments go to the
    # warehouse's service of the moment.
    service_url: str | None = None

    @property
    def awaited(self) -> bool:
        """A remote warehouse accepted it and the saga waits for its answer now."""
        return self.status is ShipmentStatus.REQUESTED and self.accepted_at is not None

    @property
    def is_remote(self) -> bool:
        """Its commands went to a remote warehouse service, not the built-in warehouse: it was routed
        there, or, in a journal written before routes were journalled, a remote warehouse accepted or
        created it (the built-in warehouse gives no reference)."""
        return self.service_url is not None or self.was_accepted or self.reference is not None

    @property
    def may_exist(self) -> bool:
        """Requested, and a command for it went to a remote warehouse, which may have acted on it
        whatever it answered, or whether its answer arrived: only a cancel makes sure it does not
        exist there."""
        return self.status is ShipmentStatus.REQUESTED and self.is_remote

    @property
    def may_be_held(self) -> bool:
        """Created, or may exist (`may_exist`): a warehouse may hold it, so withdrawing it takes a
        cancel."""
        return self.status is ShipmentStatus.CREATED or self.may_exist


def shipment_id_of(saga_id: str, warehouse_code: str) -> str:
    """The id of the saga's shipment from `warehouse_code`: a UUID (version 5) of both, so every
    attempt, and every process after a restart, sends the same shipment under the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ordersaga:shipment:{saga_id}:{warehouse_code}"))


def requested_shipments(saga_id: str, picks: tuple[Pick, ...], at: datetime) -> tuple[Shipment, ...]:
    """One shipment per warehouse the picks come from, in warehouse code order, each with that
    warehouse's picks."""
    codes = sorted({p.warehouse_code for p in picks})
    return tuple(
        Shipment(
            shipment_id_of(saga_id, code),
            code,
            tuple(p for p in picks if p.warehouse_code == code),
            ShipmentStatus.REQUESTED,
            at,
        )
        for code in codes
    )


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
    # order. A journal written before shipments were per warehouse folds into one (see evolve).
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


def start(saga_id: str, event: SagaStarted) -> SagaState:
    return SagaState(
        saga_id=saga_id,
        order_id=event.order_id,
        customer_id=event.customer_id,
        lines=event.lines,
        status=SagaStatus.ORDER_CREATED,
        version=1,
        started_at=event.at,
        updated_at=event.at,
        done=(Step.CREATE_ORDER,),
        history=(StepRecord(Step.CREATE_ORDER, StepStatus.SUCCEEDED, 1, event.at, event.at),),
    )


def evolve(state: SagaState, event: SagaEvent) -> SagaState:
    """The state after `event`; the saga's state is always the fold of its journal through this.
    Raises ValueError for a second SagaStarted."""
    # One new state per event (`replace` copies every field, and a saga folds each of its events),
    # with the fields `event` changes besides the version and the time.
    version, at = state.version + 1, event.at
    match event:
        case StepStarted(step, attempt, deadline, _):
            return replace(
                state,
                version=version,
                updated_at=at,
                status=_RUNNING_STATUS.get(step, SagaStatus.COMPENSATING),
                step=step,
                attempt=attempt,
                deadline=deadline,
                attempt_timeout=deadline - at,
                retry_at=None,
                history=_record_attempt(state.history, step, attempt, at),
                shipments=_requested_again(state.shipments)
                if state.shipments or step is not Step.CREATE_SHIPMENT
                else requested_shipments(state.saga_id, state.picks, at),
            )
        case StepSucceeded(step, _, picks, shipment_id):
            history = _finish(state.history, step, StepStatus.SUCCEEDED, at, None)
            if step in _DONE_STATUS:
                return replace(
                    state,
                    version=version,
                    updated_at=at,
                    status=_DONE_STATUS[step],
                    done=(*state.done, step),
                    picks=picks or state.picks,
                    shipment_id=shipment_id or state.shipment_id or _first_shipment(step, state),
                    step=None,
                    attempt=0,
                    deadline=None,
                    history=history,
                    shipments=_one_shipment(state, shipment_id, at)
                    if shipment_id
                    else _created(state.shipments, at),
                )
            remaining = state.compensations[1:]
            return replace(
                state,
                version=version,
                updated_at=at,
                status=SagaStatus.COMPENSATING if remaining else SagaStatus.FAILED,
                compensations=remaining,
                step=None,
                attempt=0,
                deadline=None,
                history=history,
                shipments=_cancelled(state.shipments) if step is Step.CANCEL_SHIPMENT else state.shipments,
            )
        case ShipmentCreated(shipment_id, _, reference):
            created = _update(
                state.shipments,
                shipment_id,
                status=ShipmentStatus.CREATED,
                created_at=at,
                accepted_at=None,
                reference=reference,
            )
            return replace(state, version=version, updated_at=at, shipments=created)
        case ShipmentRejected(shipment_id, reason, _):
            rejected = _update(
                state.shipments, shipment_id, status=ShipmentStatus.REJECTED, reason=reason, accepted_at=None
            )
            return replace(state, version=version, updated_at=at, shipments=rejected)
        case ShipmentAccepted(shipment_id, _):
            accepted = _update(state.shipments, shipment_id, accepted_at=at, was_accepted=True)
            return replace(state, version=version, updated_at=at, shipments=accepted)
        case ShipmentRouted(shipment_id, service_url, _):
            routed = _update(state.shipments, shipment_id, service_url=service_url)
            return replace(state, version=version, updated_at=at, shipments=routed)
        case StepFailed(step, _, reason, transient, retry_at, _):
            gave_up = None if retry_at is not None else _kind_of_failure(step, transient)
            return _after_failure(state, step, reason, retry_at, at, StepStatus.FAILED, gave_up)
        case StepTimedOut(step, _, reason, retry_at, _):
            gave_up = None if retry_at is not None else FailureKind.TIMED_OUT
            return _after_failure(state, step, reason, retry_at, at, StepStatus.TIMED_OUT, gave_up)
        case CompensationStarted(reason, _):
            # It follows, in the same decision, the step that gave up: the last one recorded.
            return _turn_back(state, reason, at, cause=state.history[-1].step, kind=state.gave_up_on)
        case SagaAborted(reason, _):
            return _turn_back(state, reason, at, cause=None, kind=FailureKind.ABORTED)
        case CustomerCancelled(_, reason):
            return _turn_back(state, reason, at, cause=None, kind=FailureKind.CANCELLED)
        case SagaParked(reason, _):
            return replace(
                state,
                version=version,
                updated_at=at,
                status=SagaStatus.NEEDS_ATTENTION,
                attention_reason=reason,
                attention_kind=state.gave_up_on,
            )
        case SagaRetried():
            # Parked in a compensation, that compensation runs again; parked at the shipment (the
            # only forward step that parks), the step after the last one done starts again.
            return replace(
                state,
                version=version,
                updated_at=at,
                status=SagaStatus.COMPENSATING if state.is_compensating else _DONE_STATUS[state.done[-1]],
                attention_reason=None,
                attention_kind=None,
            )
        case ShipmentDispatched(shipment_id, dispatched_at):
            shipments = _update(
                state.shipments, shipment_id, status=ShipmentStatus.DISPATCHED, dispatched_at=dispatched_at
            )
            every = all(s.status is ShipmentStatus.DISPATCHED for s in shipments)
            return replace(
                state,
                version=version,
                updated_at=at,
                shipments=shipments,
                dispatched_at=dispatched_at if every else None,
            )
        case SagaStarted():
            raise ValueError("a saga starts only once")
        case _:
            assert_never(event)


def _kind_of_failure(step: Step, transient: bool) -> FailureKind:
    if transient:
        return FailureKind.UNAVAILABLE
    # The inventory refuses a reservation only for want of stock.
    return FailureKind.INSUFFICIENT_STOCK if step is Step.RESERVE_STOCK else FailureKind.REJECTED


def _one_shipment(state: SagaState, shipment_id: str, at: datetime) -> tuple[Shipment, ...]:
    """A journal written before shipments were per warehouse names one shipment, with every pick, in
    its StepSucceeded(CREATE_SHIPMENT): it folds into that one, as from the warehouse of its first
    pick (decision 0022)."""
    warehouse = state.picks[0].warehouse_code if state.picks else ""
    return (Shipment(shipment_id, warehouse, state.picks, ShipmentStatus.CREATED, at, at),)


def _created(shipments: tuple[Shipment, ...], at: datetime) -> tuple[Shipment, ...]:
    """After CREATE_SHIPMENT succeeded: every shipment still requested was created, at `at`."""
    return tuple(
        replace(s, status=ShipmentStatus.CREATED, created_at=at)
        if s.status is ShipmentStatus.REQUESTED
        else s
        for s in shipments
    )


def _first_shipment(step: Step, state: SagaState) -> str | None:
    """The id `Order.shipment` shows once CREATE_SHIPMENT succeeded: its first shipment's."""
    return state.shipments[0].shipment_id if step is Step.CREATE_SHIPMENT and state.shipments else None


def _update(shipments: tuple[Shipment, ...], shipment_id: str, **changes: Any) -> tuple[Shipment, ...]:
    return tuple(replace(s, **changes) if s.shipment_id == shipment_id else s for s in shipments)


def _unsent_withdrawn(shipments: tuple[Shipment, ...]) -> tuple[Shipment, ...]:
    """Turning back: the shipments requested that no remote warehouse ever accepted are cancelled
    in the books at once. Those one accepted are kept, as they may exist: their cancel is sent.
    (A command that timed out or failed without an answer is not counted: see decision 0023.)"""
    return tuple(
        replace(s, status=ShipmentStatus.CANCELLED)
        if s.status is ShipmentStatus.REQUESTED and not s.may_exist
        else s
        for s in shipments
    )


def _cancelled(shipments: tuple[Shipment, ...]) -> tuple[Shipment, ...]:
    """After CANCEL_SHIPMENT succeeded: every shipment it sent a cancel for is cancelled."""
    return tuple(
        replace(s, status=ShipmentStatus.CANCELLED, accepted_at=None) if s.may_be_held else s
        for s in shipments
    )


def _requested_again(shipments: tuple[Shipment, ...]) -> tuple[Shipment, ...]:
    """A new attempt at CREATE_SHIPMENT sends every shipment not answered again, awaited ones too:
    their warehouse answers a command it has seen with its outcome, or accepts it again."""
    return tuple(replace(s, accepted_at=None) if s.awaited else s for s in shipments)


def _compensations(state: SagaState) -> tuple[Step, ...]:
    """The way back, newest first: the shipments created (also by a CREATE_SHIPMENT that then gave
    up, as one warehouse refused), then the stock, then the order."""
    created = any(s.may_be_held for s in state.shipments)
    earlier = tuple(
        COMPENSATION_OF[s]
        for s in reversed(state.done)
        if s in COMPENSATION_OF and s is not Step.CREATE_SHIPMENT
    )
    return (Step.CANCEL_SHIPMENT, *earlier) if created else earlier


def _turn_back(
    state: SagaState, reason: str, at: datetime, cause: Step | None, kind: FailureKind | None
) -> SagaState:
    """Compensate the steps done, newest first. A step still in flight is abandoned, not compensated:
    its effect commits together with its journal entry, and that entry was not written. A shipment
    requested and never created is withdrawn with it."""
    history = state.history
    if state.step is not None:
        history = _finish(history, state.step, StepStatus.ABANDONED, at, None)
    return replace(
        state,
        version=state.version + 1,
        updated_at=at,
        status=SagaStatus.COMPENSATING,
        compensations=_compensations(state),
        shipments=_unsent_withdrawn(state.shipments),
        failure_reason=reason,
        failure_kind=kind,
        failed_step=cause,
        attention_reason=None,
        attention_kind=None,
        step=None,
        attempt=0,
        deadline=None,
        retry_at=None,
        history=history,
    )


def _after_failure(
    state: SagaState,
    step: Step,
    reason: str,
    retry_at: datetime | None,
    at: datetime,
    final: StepStatus,
    gave_up: FailureKind | None,
) -> SagaState:
    """After a failed attempt: another one at `retry_at`, or none (None), the step having given up
    for the reason of kind `gave_up`."""
    if retry_at is not None:
        history = _finish(state.history, step, StepStatus.RETRYING, None, reason)
        return replace(
            state, version=state.version + 1, updated_at=at, retry_at=retry_at, deadline=None, history=history
        )
    return replace(
        state,
        version=state.version + 1,
        updated_at=at,
        status=SagaStatus.STOCK_RESERVATION_FAILED if step is Step.RESERVE_STOCK else state.status,
        gave_up_on=gave_up,
        step=None,
        deadline=None,
        retry_at=None,
        history=_finish(state.history, step, final, at, reason),
    )


def _record_attempt(
    history: tuple[StepRecord, ...], step: Step, attempt: int, at: datetime
) -> tuple[StepRecord, ...]:
    # Attempt 1 begins a series of its own, also when an operator retries a step that was parked.
    if attempt > 1 and history and history[-1].step is step:
        return (*history[:-1], replace(history[-1], status=StepStatus.RUNNING, attempts=attempt))
    return (*history, StepRecord(step, StepStatus.RUNNING, attempt, at))


def _finish(
    history: tuple[StepRecord, ...],
    step: Step,
    status: StepStatus,
    at: datetime | None,
    error: str | None,
) -> tuple[StepRecord, ...]:
    last = history[-1]
    assert last.step is step, f"{step} finished while {last.step} was in flight"
    return (*history[:-1], replace(last, status=status, finished_at=at, last_error=error or last.last_error))


@dataclass(frozen=True, slots=True)
class SagaChange:
    """What one transaction does to a saga: `events` appended after `before` (None for a new saga),
    the status the saga had right after each of them (`statuses`, what its timeline shows), and the
    state they lead to. Each event is folded once, here, for the decision and the read model alike."""

    before: SagaState | None
    events: tuple[SagaEvent, ...]
    after: SagaState
    statuses: tuple[SagaStatus, ...]

    @staticmethod
    def from_state(state: SagaState) -> SagaChange:
        """Nothing changed yet: the start of a transaction on an existing saga."""
        return SagaChange(state, (), state, ())

    @staticmethod
    def started(saga_id: str, event: SagaStarted) -> SagaChange:
        """A new saga: its first event, folded."""
        state = start(saga_id, event)
        return SagaChange(None, (event,), state, (state.status,))

    def apply(self, events: Iterable[SagaEvent]) -> SagaChange:
        """This change and then `events`."""
        state, statuses = self.after, list(self.statuses)
        new = tuple(events)
        for event in new:
            state = evolve(state, event)
            statuses.append(state.status)
        return SagaChange(self.before, self.events + new, state, tuple(statuses))

    @property
    def first_sequence(self) -> int:
        """The journal sequence of the first of `events`."""
        return 1 if self.before is None else self.before.version + 1


def replay(saga_id: str, events: list[SagaEvent]) -> SagaChange:
    """A whole journal as one change from nothing: its state and each event's status."""
    first = events[0] if events else None
    if not isinstance(first, SagaStarted):
        raise ValueError(f"saga {saga_id} does not begin with SagaStarted")
    return SagaChange.started(saga_id, first).apply(events[1:])


def fold(saga_id: str, events: list[SagaEvent]) -> SagaState:
    return replay(saga_id, events).after


# ---------------------------------------------------------------------------------------------- deciding


@dataclass(frozen=True, slots=True)
class Emit:
    """Record these events; no participant is involved."""

    events: tuple[SagaEvent, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """Send the in-flight step's command to its participant, if its deadline has not passed."""

    step: Step
    attempt: int
    deadline: datetime

    @property
    def participant(self) -> Participant:
        return PARTICIPANT_OF[self.step]


@dataclass(frozen=True, slots=True)
class Wait:
    until: datetime


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing more happens without an operator (terminal, or parked)."""


Action = Emit | Call | Wait | Finished


def next_action(state: SagaState, now: datetime, policy: SagaPolicy) -> Action:
    if state.is_terminal or state.status is SagaStatus.NEEDS_ATTENTION:
        return Finished()
    if state.step is not None:
        if state.retry_at is not None:
            if now < state.retry_at:
                return Wait(state.retry_at)
            return Emit((_begin(state.step, state.attempt + 1, now, policy),))
        assert state.deadline is not None
        if state.awaiting_warehouse and now < state.deadline:
            return Wait(state.deadline)
        return Call(state.step, state.attempt, state.deadline)
    if state.status is SagaStatus.COMPENSATING:
        return Emit((_begin(state.compensations[0], 1, now, policy),))
    following = FORWARD_STEPS[FORWARD_STEPS.index(state.done[-1]) + 1]
    return Emit((_begin(following, 1, now, policy),))


def _begin(step: Step, attempt: int, now: datetime, policy: SagaPolicy) -> StepStarted:
    return StepStarted(step, attempt, now + policy.timeout(step), now)


@dataclass(frozen=True, slots=True)
class Succeeded:
    picks: tuple[Pick, ...] = ()
    # What a remote warehouse calls the shipment it created.
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A remote warehouse took the command and reports its outcome later."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A business failure (a shortage, say): retrying cannot help."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A transient failure (a participant down, a contended row): a later attempt may succeed, not
    before `retry_after` if the participant asked for that (HTTP's Retry-After)."""

    reason: str
    retry_after: timedelta | None = None


Outcome = Succeeded | Rejected | Unavailable | Accepted


def on_outcome(
    state: SagaState, outcome: Outcome, now: datetime, policy: SagaPolicy
) -> tuple[SagaEvent, ...]:
    step = _in_flight(state)
    match outcome:
        case Succeeded(picks):
            return (StepSucceeded(step, now, picks),)
        case Rejected(reason):
            return refusal(state, step, reason, now)
        case Unavailable(reason, retry_after):
            retry_at = _retry_at(state, now, policy, retry_after)
            failed = StepFailed(step, state.attempt, reason, True, retry_at, now)
            exhausted = f"{step.value} failed after {state.attempt} attempts: {reason}"
            return (failed,) if retry_at else (failed, *_give_up(step, exhausted, now))
        case Accepted():
            raise ValueError(f"{step.value} is not answered later")
        case _:
            assert_never(outcome)


def refusal(state: SagaState, step: Step, reason: str, now: datetime) -> tuple[SagaEvent, ...]:
    """`step`'s participant refused (the attempt in flight, or the one waiting to be retried):
    retrying cannot help, so the step gives up."""
    failed = StepFailed(step, state.attempt, reason, False, None, now)
    return (failed, *_give_up(step, reason, now, refused=True))


def on_shipment_outcomes(
    state: SagaState, outcomes: Mapping[str, Outcome], now: datetime, policy: SagaPolicy
) -> tuple[SagaEvent, ...]:
    """What a CREATE_SHIPMENT or CANCEL_SHIPMENT attempt's answers, one per shipment id, lead to. The
    step succeeds once every shipment exists (or is cancelled), and fails as its worst answer does:
    a refusal turns the saga back, a transient failure is retried, sending again only the shipments
    not answered yet."""
    step = _in_flight(state)
    answered: list[SagaEvent] = []
    answers = list(outcomes.values())
    # CREATE_SHIPMENT: shipments requested and not answered here (awaited from an earlier answer)
    # are still to come. A cancel is done once every cancel sent is.
    every = all(isinstance(o, Succeeded) for o in answers) and not (
        step is Step.CREATE_SHIPMENT
        and any(
            s.status is ShipmentStatus.REQUESTED for s in state.shipments if s.shipment_id not in outcomes
        )
    )
    # StepSucceeded(CREATE_SHIPMENT) says every shipment requested exists, so each answer is
    # journalled on its own only when the step does not succeed, or carries a remote warehouse's
    # reference: a retry then skips the shipments created, and a turn back cancels them.
    if step is Step.CREATE_SHIPMENT:
        for shipment_id, outcome in outcomes.items():
            if isinstance(outcome, Succeeded) and (not every or outcome.reference is not None):
                answered.append(ShipmentCreated(shipment_id, now, outcome.reference))
            elif isinstance(outcome, Rejected):
                answered.append(ShipmentRejected(shipment_id, outcome.reason, now))
            elif isinstance(outcome, Accepted):
                answered.append(ShipmentAccepted(shipment_id, now))
    worst = next((o for kind in (Rejected, Unavailable) for o in answers if isinstance(o, kind)), None)
    if worst is not None:
        return (*answered, *on_outcome(state, worst, now, policy))
    if every:
        return (*answered, *on_outcome(state, Succeeded(), now, policy))
    return tuple(answered)  # some are awaited: the step waits for their answers


def on_timeout(state: SagaState, now: datetime, policy: SagaPolicy) -> tuple[SagaEvent, ...]:
    step = _in_flight(state)
    reason = f"{step.value} timed out after {state.attempt_timeout.total_seconds():g}s"
    retry_at = _retry_at(state, now, policy) if step in _RETRY_ON_TIMEOUT else None
    timed_out = StepTimedOut(step, state.attempt, reason, retry_at, now)
    if retry_at:
        return (timed_out,)
    if step in _RETRY_ON_TIMEOUT:
        reason = f"{reason}, {state.attempt} attempts"
    return (timed_out, *_give_up(step, reason, now))


def _in_flight(state: SagaState) -> Step:
    if state.step is None or state.retry_at is not None:
        raise ValueError(f"saga {state.saga_id} has no attempt in flight")
    return state.step


def _retry_at(
    state: SagaState, now: datetime, policy: SagaPolicy, retry_after: timedelta | None = None
) -> datetime | None:
    if state.attempt >= policy.max_attempts:
        return None
    return now + max(policy.backoff(state.attempt), retry_after or timedelta(0))


def _give_up(step: Step, reason: str, now: datetime, refused: bool = False) -> tuple[SagaEvent, ...]:
    # Before the order is confirmed the way out is back (compensate), and so it is once a warehouse
    # refused its shipment. A shipment that kept failing or timing out may be held by its warehouse or
    # not, and when the way back itself is blocked, only an operator may decide (decision 0022): they
    # retry it, or abort, which cancels the shipments created first.
    if step in (Step.RESERVE_STOCK, Step.CONFIRM_ORDER) or (refused and step is Step.CREATE_SHIPMENT):
        return (CompensationStarted(reason, now),)
    return (SagaParked(reason, now),)
