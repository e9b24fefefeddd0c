"""A shipment's life after the saga created it, decided purely: pending until the warehouse dispatches
it, or cancelled with its order. The saga's journal is its record, so its state is read off the saga's."""

from __future__ import annotations

import enum
from datetime import datetime

from domain.model.interventions import Decision, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import SagaState, SagaStatus, ShipmentDispatched, Step, StepStatus


class ShipmentStatus(enum.Enum):
    PENDING = "PENDING"  # created by the saga, waiting to be picked and sent
    DISPATCHED = "DISPATCHED"  # picked and sent: its stock left the warehouse
    CANCELLED = "CANCELLED"  # its order was cancelled before it was dispatched


def shipment_status(state: SagaState) -> ShipmentStatus | None:
    """The status of the saga's shipment; None while it has none."""
    if state.shipment_id is None:
        return None
    if state.dispatched_at is not None:
        return ShipmentStatus.DISPATCHED
    cancelled = any(
        r.step is Step.CANCEL_SHIPMENT and r.status is StepStatus.SUCCEEDED for r in state.history
    )
    return ShipmentStatus.CANCELLED if cancelled else ShipmentStatus.PENDING


def dispatch(state: SagaState, shipment_id: str, now: datetime) -> Decision:
    """The warehouse dispatches the shipment: once only, and only the shipment of an order that is
    neither cancelled nor being cancelled (whichever of a dispatch and a cancellation the journal
    records first wins)."""
    if state.shipment_id != shipment_id:
        return Refused(ProblemCode.UNKNOWN_SHIPMENT, f"saga {state.saga_id} has no shipment {shipment_id}")
    if state.is_dispatched:
        return Refused(
            ProblemCode.SHIPMENT_ALREADY_DISPATCHED, f"shipment {shipment_id} was already dispatched"
        )
    if state.is_compensating or state.status is not SagaStatus.COMPLETED:
        return Refused(
            ProblemCode.ORDER_ALREADY_CANCELLED,
            f"the order of shipment {shipment_id} is cancelled or being cancelled",
        )
    return (ShipmentDispatched(shipment_id, now),)
