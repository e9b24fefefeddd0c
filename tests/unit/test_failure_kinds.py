"""Every way a saga turns back or is parked has a stable kind, paired with the reason it shows."""

from __future__ import annotations

import pytest

from domain.model import interventions
from domain.model.interventions import Actor
from domain.model.saga import (
    CompensationStarted,
    FailureKind,
    SagaEvent,
    SagaParked,
    SagaRetried,
    Step,
    StepFailed,
    StepTimedOut,
)
from tests.unit.test_interventions import (
    COMPENSATION_PARKED,
    CONFIRMING,
    LATER,
    RESERVING,
    SHIPMENT_PARKED,
    T0,
    saga,
    then,
)


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        (
            (
                *RESERVING,
                StepFailed(Step.RESERVE_STOCK, 1, "insufficient stock: SKU-1 short by 3", False, None, T0),
                CompensationStarted("insufficient stock: SKU-1 short by 3", T0),
            ),
            FailureKind.INSUFFICIENT_STOCK,
        ),
        (
            (
                *CONFIRMING,
                StepFailed(Step.CONFIRM_ORDER, 1, "order was cancelled", False, None, T0),
                CompensationStarted("order was cancelled", T0),
            ),
            FailureKind.REJECTED,
        ),
        (
            (
                *CONFIRMING,
                StepFailed(Step.CONFIRM_ORDER, 3, "ORDERS is down", True, None, T0),
                CompensationStarted("CONFIRM_ORDER failed after 3 attempts: ORDERS is down", T0),
            ),
            FailureKind.UNAVAILABLE,
        ),
        (
            (
                *RESERVING,
                StepTimedOut(Step.RESERVE_STOCK, 1, "RESERVE_STOCK timed out after 10s", None, T0),
                CompensationStarted("RESERVE_STOCK timed out after 10s", T0),
            ),
            FailureKind.TIMED_OUT,
        ),
    ],
)
def test_a_step_that_gave_up_turns_the_saga_back_with_its_kind(
    events: tuple[SagaEvent, ...], kind: FailureKind
) -> None:
    state = saga(*events)
    assert (state.failure_kind, state.attention_kind) == (kind, None)


def test_an_abort_and_a_cancel_are_kinds_of_their_own() -> None:
    aborted = then(
        saga(*RESERVING),
        interventions.abort(saga(*RESERVING), "fraud", LATER, Actor("operator-1", "operator")),
    )
    cancelled = then(
        saga(*RESERVING), interventions.cancel_order(saga(*RESERVING), LATER, Actor("customer-1", "customer"))
    )
    assert (aborted.failure_kind, cancelled.failure_kind) == (FailureKind.ABORTED, FailureKind.CANCELLED)


def test_a_parked_saga_shows_why_it_is_parked_until_retried() -> None:
    parked = saga(*SHIPMENT_PARKED)
    assert (parked.attention_kind, parked.failure_kind) == (FailureKind.UNAVAILABLE, None)
    assert then(parked, (SagaRetried(LATER),)).attention_kind is None

    compensation = saga(*COMPENSATION_PARKED)
    assert compensation.attention_kind is FailureKind.UNAVAILABLE
    assert compensation.failure_kind is FailureKind.INSUFFICIENT_STOCK


def test_parking_records_the_kind_of_the_step_that_gave_up() -> None:
    stuck = saga(
        *SHIPMENT_PARKED[:-2],
        StepTimedOut(Step.CREATE_SHIPMENT, 3, "CREATE_SHIPMENT timed out after 5s", None, T0),
        SagaParked("CREATE_SHIPMENT timed out after 5s, 3 attempts", T0),
    )
    assert stuck.attention_kind is FailureKind.TIMED_OUT
