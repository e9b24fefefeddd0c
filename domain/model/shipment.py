"""A shipment's life as its warehouse reports it, decided purely: a remote warehouse's later answer
to its command (created or refused), then created until the warehouse dispatches it, or cancelled
with its order. The saga's journal is its record, so its state is read off the saga's
(`SagaState.shipments`)."""

from __future__ import annotations

from datetime import datetime

from domain.model.interventions import Decision, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import (
    Rejected,
    SagaPolicy,
    SagaState,
    SagaStatus,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentRejected,
    ShipmentStatus,
    Step,
    Succeeded,
    on_shipment_outcomes,
    refusal,
    shipment_id_of,
)


def command_id(saga_id: str, action: str, warehouse_code: str) -> str:
    """The id of the command for `action` (a step's or an event's name) on the saga's shipment from
    `warehouse_code`: the same on every attempt and after a restart, so a warehouse that sees it
    twice acts once."""
    return f"{saga_id}:{action}:{warehouse_code}"


def created_by(command: str) -> tuple[str, str, str] | None:
    """The saga, shipment and warehouse code a CREATE_SHIPMENT command id (`command_id`) names; None
    for any other text. Saga ids hold no colon; a warehouse code may."""
    saga_id, _, rest = command.partition(":")
    action, _, warehouse_code = rest.partition(":")
    if not saga_id or action != Step.CREATE_SHIPMENT.value or not warehouse_code:
        return None
    return saga_id, shipment_id_of(saga_id, warehouse_code), warehouse_code


def report(
    state: SagaState, shipment_id: str, outcome: Succeeded | Rejected, now: datetime, policy: SagaPolicy
) -> Decision:
    """A remote warehouse reports the outcome of a shipment's command it accepted earlier (or,
    racing its own answer, about to be recorded as accepted). The same outcome again changes nothing
    (no events). Refused with OUTCOME_NOT_AWAITED once the saga no longer waits for it: the step
    timed out or the saga turned back (the shipment's cancel is then sent, if it may exist), or
    another outcome was recorded first. Refused with UNKNOWN_COMMAND for a shipment no command of
    which went to a remote warehouse."""
    shipment = state.shipment(shipment_id)
    if shipment is None:
        return Refused(ProblemCode.UNKNOWN_COMMAND, f"saga {state.saga_id} has no such shipment")
    if not shipment.is_remote:
        # The built-in warehouse creates its shipments in ordersaga's own books: no report stands in.
        return Refused(ProblemCode.UNKNOWN_COMMAND, "no remote warehouse was sent that command")
    if (shipment.status, isinstance(outcome, Succeeded)) in {
        (ShipmentStatus.CREATED, True),
        (ShipmentStatus.REJECTED, False),
    }:
        return ()
    if state.step is not Step.CREATE_SHIPMENT or shipment.status is not ShipmentStatus.REQUESTED:
        return Refused(
            ProblemCode.OUTCOME_NOT_AWAITED,
            f"shipment {shipment_id} is {shipment.status.value} and its saga {state.status.value}: "
            "the outcome is no longer awaited",
        )
    if state.retry_at is None:
        return on_shipment_outcomes(state, {shipment_id: outcome}, now, policy)
    # Between attempts: the next attempt skips a shipment created; a refusal gives up now.
    if isinstance(outcome, Succeeded):
        return (ShipmentCreated(shipment_id, now, outcome.reference),)
    return (
        ShipmentRejected(shipment_id, outcome.reason, now),
        *refusal(state, state.step, outcome.reason, now),
    )


def dispatch(state: SagaState, shipment_id: str, now: datetime) -> Decision:
    """The warehouse dispatches one of the order's shipments: once only, and only a shipment of an
    order whose saga completed (whichever of a dispatch and a cancellation the journal records first
    wins). The others stay to be dispatched on their own. Refused with ORDER_ALREADY_CANCELLED for an
    order cancelled or being cancelled, SHIPMENT_NOT_READY for one whose saga is still creating its
    shipments or waits for an operator (it may yet complete)."""
    shipment = state.shipment(shipment_id)
    if shipment is None:
        return Refused(ProblemCode.UNKNOWN_SHIPMENT, f"saga {state.saga_id} has no shipment {shipment_id}")
    if shipment.status is ShipmentStatus.DISPATCHED:
        return Refused(
            ProblemCode.SHIPMENT_ALREADY_DISPATCHED, f"shipment {shipment_id} was already dispatched"
        )
    if state.is_compensating or state.status is SagaStatus.FAILED:
        return Refused(
            ProblemCode.ORDER_ALREADY_CANCELLED,
            f"the order of shipment {shipment_id} is cancelled or being cancelled",
        )
    if state.status is not SagaStatus.COMPLETED:
        return Refused(
            ProblemCode.SHIPMENT_NOT_READY,
            f"the order of shipment {shipment_id} is not placed in full yet (its saga is "
            f"{state.status.value}): dispatch it once the saga is COMPLETED",
        )
    return (ShipmentDispatched(shipment_id, now),)
