"""Shipments, decided purely: one per warehouse, created once the saga's CREATE_SHIPMENT answers,
each dispatched once only and never for an order that is cancelled or being cancelled; the order is
shipped once every shipment is. Journals written when an order had one shipment fold into one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.model import interventions, shipment
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import (
    SagaEvent,
    SagaState,
    SagaStatus,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentStatus,
    Step,
    StepSucceeded,
    requested_shipments,
    shipment_id_of,
)
from domain.model.values import Pick
from tests.unit.test_interventions import (
    COMPLETED,
    CONFIRMING,
    LATER,
    SHIPMENT_PARKED,
    SHIPPING,
    T0,
    first_step,
    saga,
    started,
    then,
)

CUSTOMER = Actor("customer-1", "customer")
DISPATCHED = (*COMPLETED, ShipmentDispatched("shipment-1", LATER))

# An order picked from two warehouses, with its shipments created by this release.
TWO_PICKS = (Pick("W1", "A", "SKU-1", 1), Pick("W2", "B", "SKU-1", 1))
W1, W2 = shipment_id_of("saga-1", "W1"), shipment_id_of("saga-1", "W2")
TWO_COMPLETED = (
    *CONFIRMING[:-2],
    StepSucceeded(Step.RESERVE_STOCK, T0, TWO_PICKS),
    *CONFIRMING[-1:],
    StepSucceeded(Step.CONFIRM_ORDER, T0),
    started(Step.CREATE_SHIPMENT),
    ShipmentCreated(W1, T0),
    ShipmentCreated(W2, T0),
    StepSucceeded(Step.CREATE_SHIPMENT, T0),
)


def status_of(state: SagaState, shipment_id: str) -> ShipmentStatus:
    found = state.shipment(shipment_id)
    assert found is not None
    return found.status


def test_a_journal_with_one_shipment_for_the_order_folds_into_one_with_every_pick() -> None:
    state = saga(*COMPLETED)

    (only,) = state.shipments
    assert (only.shipment_id, only.warehouse_code, only.picks) == ("shipment-1", "W1", state.picks)
    assert only.status is ShipmentStatus.CREATED
    assert state.shipment_id == "shipment-1"


def test_a_completed_sagas_shipment_is_created_until_dispatched() -> None:
    assert status_of(saga(*SHIPPING), shipment_id_of("saga-1", "W1")) is ShipmentStatus.REQUESTED

    state = then(saga(*COMPLETED), shipment.dispatch(saga(*COMPLETED), "shipment-1", LATER))

    assert status_of(state, "shipment-1") is ShipmentStatus.DISPATCHED
    assert (state.status, state.dispatched_at) == (SagaStatus.COMPLETED, LATER)


@pytest.mark.parametrize(
    ("events", "shipment_id", "code"),
    [
        (DISPATCHED, "shipment-1", ProblemCode.SHIPMENT_ALREADY_DISPATCHED),
        (COMPLETED, "shipment-2", ProblemCode.UNKNOWN_SHIPMENT),
        (SHIPMENT_PARKED, "shipment-1", ProblemCode.UNKNOWN_SHIPMENT),
        # Parked while creating its shipments, not turning back: it may yet complete.
        (SHIPMENT_PARKED, shipment_id_of("saga-1", "W1"), ProblemCode.SHIPMENT_NOT_READY),
    ],
)
def test_a_dispatch_is_refused_once_done_for_another_shipment_or_before_completion(
    events: tuple[SagaEvent, ...], shipment_id: str, code: ProblemCode
) -> None:
    refused = shipment.dispatch(saga(*events), shipment_id, LATER)
    assert isinstance(refused, Refused) and refused.code is code


def test_a_cancelled_orders_shipment_is_cancelled_first_and_never_dispatched() -> None:
    cancelled = then(saga(*COMPLETED), interventions.cancel_order(saga(*COMPLETED), LATER, CUSTOMER))
    assert cancelled.compensations == (Step.CANCEL_SHIPMENT, Step.RELEASE_STOCK, Step.CANCEL_ORDER)
    assert status_of(cancelled, "shipment-1") is ShipmentStatus.CREATED

    refused = shipment.dispatch(cancelled, "shipment-1", LATER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED

    undone = then(cancelled, (first_step(cancelled), StepSucceeded(Step.CANCEL_SHIPMENT, LATER)))
    assert status_of(undone, "shipment-1") is ShipmentStatus.CANCELLED
    refused = shipment.dispatch(undone, "shipment-1", LATER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED


def test_a_dispatched_order_is_not_cancelled() -> None:
    refused = interventions.cancel_order(saga(*DISPATCHED), LATER, CUSTOMER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED


def test_each_shipment_is_dispatched_on_its_own_and_the_order_ships_with_the_last() -> None:
    state = saga(*TWO_COMPLETED)
    assert [(s.warehouse_code, s.picks) for s in state.shipments] == [
        ("W1", TWO_PICKS[:1]),
        ("W2", TWO_PICKS[1:]),
    ]

    partly = then(state, shipment.dispatch(state, W2, LATER))
    assert [s.status for s in partly.shipments] == [ShipmentStatus.CREATED, ShipmentStatus.DISPATCHED]
    assert partly.any_dispatched and not partly.is_dispatched
    assert partly.dispatched_at is None

    wholly = then(partly, shipment.dispatch(partly, W1, LATER))
    assert wholly.is_dispatched and wholly.dispatched_at == LATER


def test_an_order_with_one_shipment_dispatched_is_refused_cancellation_and_nothing_changes() -> None:
    state = saga(*TWO_COMPLETED)
    partly = then(state, shipment.dispatch(state, W1, LATER))

    refused = interventions.cancel_order(partly, LATER, CUSTOMER)

    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED
    assert "partially shipped" in refused.message


WAREHOUSES = st.lists(st.sampled_from(["W1", "W2", "W3", "EAST", "WEST"]), min_size=1, max_size=8)


@given(WAREHOUSES)
def test_any_set_of_warehouses_gives_one_shipment_each_with_exactly_its_picks(codes: list[str]) -> None:
    picks = tuple(Pick(code, "A", f"SKU-{n}", n + 1) for n, code in enumerate(codes))

    shipments = requested_shipments("saga-1", picks, T0)

    assert [s.warehouse_code for s in shipments] == sorted(set(codes))
    for s in shipments:
        assert s.picks == tuple(p for p in picks if p.warehouse_code == s.warehouse_code)
        assert s.shipment_id == shipment_id_of("saga-1", s.warehouse_code)
        assert s.status is ShipmentStatus.REQUESTED
    assert sorted(p.sku for s in shipments for p in s.picks) == sorted(p.sku for p in picks)
    assert len({s.shipment_id for s in shipments}) == len(shipments)
