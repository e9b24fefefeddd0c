"""Shipments of remote warehouses, decided purely: a warehouse answers at once (created, refused,
unavailable) or accepts the command and reports later; the step waits for its reports until its
deadline, a refusal turns the saga back and cancels every shipment that may exist, and a report
that comes too late or twice changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.model import interventions, shipment
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import (
    Accepted,
    Call,
    Rejected,
    SagaAborted,
    SagaState,
    SagaStatus,
    ShipmentAccepted,
    ShipmentCreated,
    ShipmentRouted,
    ShipmentStatus,
    Step,
    StepSucceeded,
    Succeeded,
    Unavailable,
    Wait,
    next_action,
    on_shipment_outcomes,
    on_timeout,
)
from tests.unit.test_interventions import LATER, POLICY, T0, saga, then
from tests.unit.test_shipment import TWO_COMPLETED, W1, W2

# Both shipments requested, none answered yet.
TWO_SHIPPING = TWO_COMPLETED[:-3]
DEADLINE = T0 + POLICY.shipment_timeout


def answered(state: SagaState, **outcomes: object) -> SagaState:
    by_id = {W1: outcomes["w1"], W2: outcomes["w2"]} if "w2" in outcomes else {W1: outcomes["w1"]}
    return then(state, on_shipment_outcomes(state, by_id, T0, POLICY))  # type: ignore[arg-type]


def status_of(state: SagaState, shipment_id: str) -> ShipmentStatus:
    found = state.shipment(shipment_id)
    assert found is not None
    return found.status


def test_a_shipment_accepted_for_later_makes_the_step_wait_for_its_report_until_its_deadline() -> None:
    state = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Succeeded(reference="WMS-2"))

    assert state.step is Step.CREATE_SHIPMENT and state.awaiting_warehouse
    assert status_of(state, W2) is ShipmentStatus.CREATED
    assert state.shipment(W2).reference == "WMS-2"  # type: ignore[union-attr]
    assert next_action(state, T0, POLICY) == Wait(DEADLINE)
    assert isinstance(next_action(state, DEADLINE, POLICY), Call)  # then the timeout is recorded


def test_the_last_report_of_creation_completes_the_saga() -> None:
    waiting = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Succeeded(reference="WMS-2"))

    decision = shipment.report(waiting, W1, Succeeded(reference="WMS-1"), LATER, POLICY)
    state = then(waiting, decision)

    assert decision == (ShipmentCreated(W1, LATER, "WMS-1"), StepSucceeded(Step.CREATE_SHIPMENT, LATER))
    assert state.status is SagaStatus.COMPLETED
    assert [s.reference for s in state.shipments] == ["WMS-1", "WMS-2"]
    assert shipment.report(state, W1, Succeeded(reference="WMS-1"), LATER, POLICY) == ()  # again: nothing


def test_a_report_while_another_shipment_is_still_awaited_only_records_this_one() -> None:
    waiting = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Accepted())

    state = then(waiting, shipment.report(waiting, W2, Succeeded(), LATER, POLICY))

    assert status_of(state, W2) is ShipmentStatus.CREATED and state.awaiting_warehouse
    assert next_action(state, T0, POLICY) == Wait(DEADLINE)


def test_a_refusal_turns_back_and_cancels_the_shipments_that_may_exist_awaited_ones_too() -> None:
    state = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Rejected("no carrier"))

    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations[0] is Step.CANCEL_SHIPMENT
    assert [s.shipment_id for s in state.shipments_for(Step.CANCEL_SHIPMENT)] == [W1]
    assert status_of(state, W2) is ShipmentStatus.REJECTED

    late = shipment.report(state, W1, Succeeded(), LATER, POLICY)
    assert isinstance(late, Refused) and late.code is ProblemCode.OUTCOME_NOT_AWAITED


def test_a_reported_refusal_turns_back_and_a_report_of_the_other_outcome_is_refused() -> None:
    waiting = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Succeeded())

    state = then(waiting, shipment.report(waiting, W1, Rejected("out of boxes"), LATER, POLICY))

    assert state.status is SagaStatus.COMPENSATING
    assert [s.shipment_id for s in state.shipments_for(Step.CANCEL_SHIPMENT)] == [W2]
    assert shipment.report(state, W1, Rejected("out of boxes"), LATER, POLICY) == ()
    other = shipment.report(state, W1, Succeeded(), LATER, POLICY)
    assert isinstance(other, Refused) and other.code is ProblemCode.OUTCOME_NOT_AWAITED


def test_a_deadline_passed_while_awaiting_is_a_timeout_and_the_next_attempt_sends_again() -> None:
    waiting = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Succeeded())

    timed_out = then(waiting, on_timeout(waiting, DEADLINE, POLICY))
    retried = then(timed_out, next_action(timed_out, timed_out.retry_at, POLICY).events)  # type: ignore[arg-type,union-attr]

    assert [s.shipment_id for s in retried.shipments_for(Step.CREATE_SHIPMENT)] == [W1]
    assert not retried.awaiting_warehouse


def test_a_report_between_attempts_is_kept_and_a_refusal_then_gives_up_at_once() -> None:
    waiting = answered(saga(*TWO_SHIPPING), w1=Accepted(), w2=Unavailable("busy"))
    assert waiting.retry_at is not None

    created = then(waiting, shipment.report(waiting, W1, Succeeded(), LATER, POLICY))
    assert status_of(created, W1) is ShipmentStatus.CREATED and created.retry_at is not None

    refused = then(waiting, shipment.report(waiting, W1, Rejected("closed"), LATER, POLICY))
    assert refused.status is SagaStatus.COMPENSATING


def test_a_transient_failure_is_retried_no_sooner_than_the_warehouse_asked() -> None:
    asked = timedelta(seconds=30)

    state = answered(saga(*TWO_SHIPPING), w1=Unavailable("429", asked), w2=Succeeded())

    assert state.retry_at == T0 + asked
    sooner = answered(saga(*TWO_SHIPPING), w1=Unavailable("503", timedelta(0)), w2=Succeeded())
    assert sooner.retry_at == T0 + POLICY.backoff(1)


def test_a_report_names_a_shipment_of_the_saga() -> None:
    unknown = shipment.report(saga(*TWO_SHIPPING), "elsewhere", Succeeded(), LATER, POLICY)
    assert isinstance(unknown, Refused) and unknown.code is ProblemCode.UNKNOWN_COMMAND


@given(st.text(max_size=12), st.sampled_from([s.value for s in Step]), st.text(max_size=12))
def test_a_command_id_names_its_saga_shipment_and_warehouse_only_for_a_shipments_creation(
    saga_id: str, action: str, warehouse_code: str
) -> None:
    assume(":" not in saga_id and saga_id and warehouse_code)
    named = shipment.created_by(shipment.command_id(saga_id, action, warehouse_code))
    if action == Step.CREATE_SHIPMENT.value:
        assert named == (saga_id, shipment.shipment_id_of(saga_id, warehouse_code), warehouse_code)
    else:
        assert named is None


@pytest.mark.parametrize(
    "text", ["", "saga-1", "saga-1:CREATE_SHIPMENT", "saga-1:CANCEL_SHIPMENT:W1", ":x:W1"]
)
def test_text_that_is_no_creation_command_names_nothing(text: str) -> None:
    assert shipment.created_by(text) is None


def test_an_accepted_shipment_is_journalled_as_accepted() -> None:
    state = saga(*TWO_SHIPPING)
    events = on_shipment_outcomes(state, {W1: Accepted(), W2: Accepted()}, T0, POLICY)
    assert events == (ShipmentAccepted(W1, T0), ShipmentAccepted(W2, T0))


SERVICE = "http://wms.example/commands"


def routed(state: SagaState, *shipment_ids: str) -> SagaState:
    return then(state, [ShipmentRouted(shipment_id, SERVICE, T0) for shipment_id in shipment_ids])


def test_a_shipment_routed_to_a_warehouse_that_never_answered_is_cancelled_when_the_saga_turns_back() -> None:
    # W1's command went out and its answer was lost (a timeout); W2's warehouse refused.
    state = answered(routed(saga(*TWO_SHIPPING), W1, W2), w1=Unavailable("no answer"), w2=Rejected("closed"))

    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations[0] is Step.CANCEL_SHIPMENT
    assert [s.shipment_id for s in state.shipments_for(Step.CANCEL_SHIPMENT)] == [W1]
    assert state.shipment(W1).service_url == SERVICE  # type: ignore[union-attr]


def test_an_abort_after_every_attempt_timed_out_cancels_the_routed_shipment_only() -> None:
    state = routed(saga(*TWO_SHIPPING), W1)  # W2 is the built-in warehouse's: never routed
    for _ in range(POLICY.max_attempts):
        state = then(state, on_timeout(state, state.deadline, POLICY))  # type: ignore[arg-type]
        if state.retry_at is not None:
            state = then(state, next_action(state, state.retry_at, POLICY).events)  # type: ignore[union-attr]
    assert state.status is SagaStatus.NEEDS_ATTENTION

    aborted = then(state, [SagaAborted("review", LATER)])

    assert [s.shipment_id for s in aborted.shipments_for(Step.CANCEL_SHIPMENT)] == [W1]
    assert status_of(aborted, W2) is ShipmentStatus.CANCELLED  # withdrawn: its attempts left no trace


def test_a_report_for_a_shipment_no_command_of_which_went_to_a_remote_warehouse_is_refused() -> None:
    state = routed(saga(*TWO_SHIPPING), W1)

    built_in = shipment.report(state, W2, Succeeded(reference="forged"), LATER, POLICY)

    assert isinstance(built_in, Refused) and built_in.code is ProblemCode.UNKNOWN_COMMAND
    assert shipment.report(state, W1, Succeeded(), LATER, POLICY) != built_in


def test_a_shipment_a_remote_warehouse_created_before_routes_were_journalled_is_cancelled_as_remote() -> None:
    # A journal written before routes: W1's warehouse created it (its reference), W2's refused.
    state = answered(saga(*TWO_SHIPPING), w1=Succeeded(reference="WMS-1"), w2=Rejected("closed"))

    assert [s.shipment_id for s in state.shipments_for(Step.CANCEL_SHIPMENT)] == [W1]
    assert state.shipment(W1).is_remote  # type: ignore[union-attr]


def test_a_rerouted_retry_routes_what_a_remote_warehouse_may_hold_to_its_warehouses_service_now() -> None:
    # W1's was routed and its command timed out on every attempt; W2 is the built-in warehouse's.
    state = routed(saga(*TWO_SHIPPING), W1)
    for _ in range(POLICY.max_attempts):
        state = then(state, on_timeout(state, state.deadline, POLICY))  # type: ignore[arg-type]
        if state.retry_at is not None:
            state = then(state, next_action(state, state.retry_at, POLICY).events)  # type: ignore[union-attr]
    operator = Actor("op-1", "operator")
    moved = "http://wms-2.example/commands"

    kept = interventions.retry(state, LATER, operator)
    rerouted = interventions.retry(state, LATER, operator, {"W1": moved, "W2": None})
    nowhere = interventions.retry(state, LATER, operator, {"W1": None, "W2": None})

    assert not any(isinstance(e, ShipmentRouted) for e in kept)  # type: ignore[union-attr]
    assert then(state, rerouted).shipment(W1).service_url == moved  # type: ignore[union-attr]
    assert then(state, rerouted).shipment(W2).service_url is None  # type: ignore[union-attr]
    assert isinstance(nowhere, Refused) and nowhere.code is ProblemCode.NO_WAREHOUSE_SERVICE
