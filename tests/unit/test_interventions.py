"""Operators' and customers' requests on a saga, and how the saga's state takes them; deadlines kept
across a restart. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.model import interventions
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import (
    CUSTOMER_CANCELLED,
    CompensationStarted,
    CustomerCancelled,
    Emit,
    SagaAborted,
    SagaEvent,
    SagaParked,
    SagaPolicy,
    SagaRetried,
    SagaStarted,
    SagaState,
    SagaStatus,
    Step,
    StepFailed,
    StepStarted,
    StepStatus,
    StepSucceeded,
    StepTimedOut,
    evolve,
    fold,
    next_action,
    on_timeout,
)
from domain.model.values import OrderLine, Pick

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=1)
POLICY = SagaPolicy()
PICKS = (Pick("W1", "A", "SKU-1", 2),)


def started(step: Step, attempt: int = 1) -> StepStarted:
    return StepStarted(step, attempt, T0 + POLICY.timeout(step), T0)


def failed(step: Step, reason: str, retry: bool = False) -> StepFailed:
    return StepFailed(step, 1, reason, True, T0 + POLICY.retry_backoff if retry else None, T0)


RESERVING = (started(Step.RESERVE_STOCK),)
CONFIRMING = (*RESERVING, StepSucceeded(Step.RESERVE_STOCK, T0, PICKS), started(Step.CONFIRM_ORDER))
SHIPPING = (*CONFIRMING, StepSucceeded(Step.CONFIRM_ORDER, T0), started(Step.CREATE_SHIPMENT))
COMPLETED = (*SHIPPING, StepSucceeded(Step.CREATE_SHIPMENT, T0, shipment_id="shipment-1"))
SHIPMENT_PARKED = (
    *SHIPPING,
    failed(Step.CREATE_SHIPMENT, "SHIPMENT down"),
    SagaParked("CREATE_SHIPMENT failed after 3 attempts: SHIPMENT down", T0),
)
COMPENSATING = (
    *RESERVING,
    StepFailed(Step.RESERVE_STOCK, 1, "insufficient stock", False, None, T0),
    CompensationStarted("insufficient stock", T0),
    started(Step.CANCEL_ORDER),
)
COMPENSATION_PARKED = (
    *COMPENSATING,
    failed(Step.CANCEL_ORDER, "ORDERS down"),
    SagaParked("CANCEL_ORDER failed after 3 attempts: ORDERS down", T0),
)
FAILED = (*COMPENSATING, StepSucceeded(Step.CANCEL_ORDER, T0))


def saga(*events: SagaEvent) -> SagaState:
    return fold("saga-1", [SagaStarted("order-1", "customer-1", (OrderLine("SKU-1", 2),), T0), *events])


def then(state: SagaState, decision: interventions.Decision) -> SagaState:
    assert not isinstance(decision, Refused), decision
    for event in decision:
        state = evolve(state, event)
    return state


def first_step(state: SagaState) -> StepStarted:
    """What the orchestrator records next, at LATER."""
    action = next_action(state, LATER, POLICY)
    assert isinstance(action, Emit)
    (event,) = action.events
    assert isinstance(event, StepStarted)
    return event


# ------------------------------------------------------------------------------------------------ abort


def test_aborting_a_reservation_in_flight_abandons_it_and_cancels_the_order() -> None:
    state = then(
        saga(*RESERVING),
        interventions.abort(saga(*RESERVING), "fraud suspected", LATER, Actor("operator-1", "operator")),
    )

    assert state.status is SagaStatus.COMPENSATING
    assert state.failure_reason == "fraud suspected"
    assert state.compensations == (Step.CANCEL_ORDER,)
    assert (state.step, state.deadline, state.retry_at) == (None, None, None)
    reserve = state.history[-1]
    assert (reserve.step, reserve.status, reserve.finished_at) == (
        Step.RESERVE_STOCK,
        StepStatus.ABANDONED,
        LATER,
    )
    assert first_step(state).step is Step.CANCEL_ORDER


def test_aborting_during_confirmation_releases_the_reserved_stock_first() -> None:
    state = then(
        saga(*CONFIRMING),
        interventions.abort(saga(*CONFIRMING), "operator", LATER, Actor("operator-1", "operator")),
    )

    assert state.compensations == (Step.RELEASE_STOCK, Step.CANCEL_ORDER)
    assert state.history[-1].status is StepStatus.ABANDONED
    assert first_step(state) == StepStarted(Step.RELEASE_STOCK, 1, LATER + POLICY.compensation_timeout, LATER)


def test_aborting_a_step_that_waits_for_its_retry_stops_the_retry() -> None:
    waiting = saga(*CONFIRMING, failed(Step.CONFIRM_ORDER, "ORDERS down", retry=True))
    assert waiting.retry_at is not None

    state = then(waiting, interventions.abort(waiting, "operator", LATER, Actor("operator-1", "operator")))
    assert (state.status, state.retry_at, state.step) == (SagaStatus.COMPENSATING, None, None)
    assert state.history[-1].status is StepStatus.ABANDONED


def test_aborting_a_parked_shipment_compensates_the_confirmed_order() -> None:
    parked = saga(*SHIPMENT_PARKED)
    state = then(parked, interventions.abort(parked, "no carrier", LATER, Actor("operator-1", "operator")))

    assert state.status is SagaStatus.COMPENSATING
    assert (state.failure_reason, state.attention_reason) == ("no carrier", None)
    assert state.compensations == (Step.RELEASE_STOCK, Step.CANCEL_ORDER)


@pytest.mark.parametrize(
    ("events", "code"),
    [
        (COMPLETED, ProblemCode.SAGA_FINISHED),
        (FAILED, ProblemCode.SAGA_FINISHED),
        (COMPENSATING, ProblemCode.SAGA_ALREADY_COMPENSATING),
        (COMPENSATION_PARKED, ProblemCode.SAGA_ALREADY_COMPENSATING),
    ],
)
def test_abort_is_refused_when_finished_or_already_compensating(
    events: tuple[SagaEvent, ...], code: ProblemCode
) -> None:
    refused = interventions.abort(saga(*events), "operator", LATER, Actor("operator-1", "operator"))
    assert isinstance(refused, Refused) and refused.code is code


# ------------------------------------------------------------------------------------------------ retry


def test_retrying_a_parked_compensation_runs_it_again_with_fresh_attempts() -> None:
    parked = saga(*COMPENSATION_PARKED)
    assert parked.status is SagaStatus.NEEDS_ATTENTION
    assert parked.attention_reason == "CANCEL_ORDER failed after 3 attempts: ORDERS down"

    state = then(parked, interventions.retry(parked, LATER, Actor("operator-1", "operator")))
    assert state.status is SagaStatus.COMPENSATING
    assert (state.attention_reason, state.failure_reason) == (None, "insufficient stock")
    assert first_step(state) == StepStarted(Step.CANCEL_ORDER, 1, LATER + POLICY.compensation_timeout, LATER)

    state = evolve(state, first_step(state))
    cancels = [r for r in state.history if r.step is Step.CANCEL_ORDER]
    assert [(r.status, r.attempts) for r in cancels] == [(StepStatus.FAILED, 1), (StepStatus.RUNNING, 1)]


def test_retrying_a_parked_shipment_creates_it_again() -> None:
    parked = saga(*SHIPMENT_PARKED)
    state = then(parked, interventions.retry(parked, LATER, Actor("operator-1", "operator")))

    assert state.status is SagaStatus.ORDER_CONFIRMED
    assert state.failure_reason is None and state.attention_reason is None
    assert first_step(state).step is Step.CREATE_SHIPMENT


@pytest.mark.parametrize("events", [RESERVING, COMPENSATING, COMPLETED, FAILED])
def test_only_a_parked_saga_is_retried(events: tuple[SagaEvent, ...]) -> None:
    refused = interventions.retry(saga(*events), LATER, Actor("operator-1", "operator"))
    assert isinstance(refused, Refused) and refused.code is ProblemCode.SAGA_NOT_PARKED


def test_interventions_are_recorded_as_events() -> None:
    parked = saga(*COMPENSATION_PARKED)
    operator, customer = Actor("operator-1", "operator"), Actor("customer-1", "customer")
    assert interventions.retry(parked, LATER, operator) == (SagaRetried(LATER, "operator-1", "operator"),)
    assert interventions.abort(saga(*RESERVING), "why", LATER, operator) == (
        SagaAborted("why", LATER, "operator-1", "operator"),
    )
    assert interventions.cancel_order(saga(*RESERVING), LATER, customer) == (
        CustomerCancelled(LATER, CUSTOMER_CANCELLED, "customer-1", "customer"),
    )


# ----------------------------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("events", [(), RESERVING, CONFIRMING, SHIPPING, SHIPMENT_PARKED, COMPLETED])
def test_the_customer_may_cancel_until_the_shipment_is_dispatched(events: tuple[SagaEvent, ...]) -> None:
    before = saga(*events)
    state = then(before, interventions.cancel_order(before, LATER, Actor("customer-1", "customer")))

    assert state.status is SagaStatus.COMPENSATING
    assert state.failure_reason == CUSTOMER_CANCELLED
    assert state.compensations[-1] is Step.CANCEL_ORDER
    assert (Step.RELEASE_STOCK in state.compensations) is (Step.RESERVE_STOCK in before.done)
    assert (state.compensations[:1] == (Step.CANCEL_SHIPMENT,)) is (Step.CREATE_SHIPMENT in before.done)


@pytest.mark.parametrize(
    ("events", "code"),
    [
        (FAILED, ProblemCode.ORDER_ALREADY_CANCELLED),
        (COMPENSATING, ProblemCode.ORDER_ALREADY_CANCELLED),
        (COMPENSATION_PARKED, ProblemCode.ORDER_ALREADY_CANCELLED),
    ],
)
def test_cancelling_a_shipped_or_cancelled_order_is_refused(
    events: tuple[SagaEvent, ...], code: ProblemCode
) -> None:
    refused = interventions.cancel_order(saga(*events), LATER, Actor("customer-1", "customer"))
    assert isinstance(refused, Refused) and refused.code is code


# ------------------------------------------------------------------------------------------- deadlines


def test_a_timeout_is_reported_as_the_attempt_was_given_not_as_the_policy_says_now() -> None:
    given = StepStarted(Step.RESERVE_STOCK, 1, T0 + timedelta(seconds=3), T0)
    state = saga(given)
    restarted_with = SagaPolicy(reserve_timeout=timedelta(seconds=10))

    (timed_out, compensate) = on_timeout(state, LATER, restarted_with)
    assert isinstance(timed_out, StepTimedOut) and timed_out.reason == "RESERVE_STOCK timed out after 3s"
    assert compensate == CompensationStarted("RESERVE_STOCK timed out after 3s", LATER)
