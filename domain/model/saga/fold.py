"""Applying events: `evolve` folds one event into the saga's state, `SagaChange` one transaction's
events, `replay` and `fold` a whole journal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, assert_never

from domain.model.saga.events import (
    CompensationStarted,
    CustomerCancelled,
    SagaAborted,
    SagaEvent,
    SagaParked,
    SagaRetried,
    SagaStarted,
    ShipmentAccepted,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentRejected,
    ShipmentRouted,
    StepFailed,
    StepStarted,
    StepSucceeded,
    StepTimedOut,
)
from domain.model.saga.shipments import Shipment, ShipmentStatus, requested_shipments
from domain.model.saga.state import FailureKind, SagaState, SagaStatus, StepRecord, StepStatus
from domain.model.saga.steps import COMPENSATION_OF, Step

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
