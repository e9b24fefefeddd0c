"""A shipment's states, decided purely: pending once the saga created it, dispatched once only, and
never for an order that is cancelled or being cancelled."""

from __future__ import annotations

import pytest

from domain.model import interventions, shipment
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import SagaEvent, SagaStatus, ShipmentDispatched, Step, StepSucceeded
from domain.model.shipment import ShipmentStatus
from tests.unit.test_interventions import (
    COMPLETED,
    LATER,
    SHIPMENT_PARKED,
    SHIPPING,
    first_step,
    saga,
    then,
)

DISPATCHED = (*COMPLETED, ShipmentDispatched("shipment-1", LATER))


def test_a_completed_sagas_shipment_is_pending_until_dispatched() -> None:
    assert shipment.shipment_status(saga(*SHIPPING)) is None
    assert shipment.shipment_status(saga(*COMPLETED)) is ShipmentStatus.PENDING

    state = then(saga(*COMPLETED), shipment.dispatch(saga(*COMPLETED), "shipment-1", LATER))

    assert shipment.shipment_status(state) is ShipmentStatus.DISPATCHED
    assert (state.status, state.dispatched_at) == (SagaStatus.COMPLETED, LATER)


@pytest.mark.parametrize(
    ("events", "shipment_id", "code"),
    [
        (DISPATCHED, "shipment-1", ProblemCode.SHIPMENT_ALREADY_DISPATCHED),
        (COMPLETED, "shipment-2", ProblemCode.UNKNOWN_SHIPMENT),
        (SHIPMENT_PARKED, "shipment-1", ProblemCode.UNKNOWN_SHIPMENT),
    ],
)
def test_a_dispatch_is_refused_once_done_or_for_another_shipment(
    events: tuple[SagaEvent, ...], shipment_id: str, code: ProblemCode
) -> None:
    refused = shipment.dispatch(saga(*events), shipment_id, LATER)
    assert isinstance(refused, Refused) and refused.code is code


def test_a_cancelled_orders_shipment_is_cancelled_first_and_never_dispatched() -> None:
    cancelled = then(
        saga(*COMPLETED), interventions.cancel_order(saga(*COMPLETED), LATER, Actor("customer-1", "customer"))
    )
    assert cancelled.compensations == (Step.CANCEL_SHIPMENT, Step.RELEASE_STOCK, Step.CANCEL_ORDER)
    assert shipment.shipment_status(cancelled) is ShipmentStatus.PENDING

    refused = shipment.dispatch(cancelled, "shipment-1", LATER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED

    undone = then(cancelled, (first_step(cancelled), StepSucceeded(Step.CANCEL_SHIPMENT, LATER)))
    assert shipment.shipment_status(undone) is ShipmentStatus.CANCELLED
    refused = shipment.dispatch(undone, "shipment-1", LATER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED


def test_a_dispatched_order_is_not_cancelled() -> None:
    refused = interventions.cancel_order(saga(*DISPATCHED), LATER, Actor("customer-1", "customer"))
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED
