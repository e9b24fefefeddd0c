"""A shipment's life after the saga created it, decided purely: created until the warehouse
dispatches it, or cancelled with its order. The saga's journal is its record, so its state is read
off the saga's (`SagaState.shipments`)."""

from __future__ import annotations

from datetime import datetime

from domain.model.interventions import Decision, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import SagaState, SagaStatus, ShipmentDispatched, ShipmentStatus


def dispatch(state: SagaState, shipment_id: str, now: datetime) -> Decision:
    """The warehouse dispatches one of the order's shipments: once only, and only a shipment of an
    order that is neither cancelled nor being cancelled (whichever of a dispatch and a cancellation
    the journal records first wins). The others stay to be dispatched on their own."""
    shipment = state.shipment(shipment_id)
    if shipment is None:
        return Refused(ProblemCode.UNKNOWN_SHIPMENT, f"saga {state.saga_id} has no shipment {shipment_id}")
    if shipment.status is ShipmentStatus.DISPATCHED:
        return Refused(
            ProblemCode.SHIPMENT_ALREADY_DISPATCHED, f"shipment {shipment_id} was already dispatched"
        )
    if state.is_compensating or state.status is not SagaStatus.COMPLETED:
        return Refused(
            ProblemCode.ORDER_ALREADY_CANCELLED,
            f"the order of shipment {shipment_id} is cancelled or being cancelled",
        )
    return (ShipmentDispatched(shipment_id, now),)
