"""Operators and customers stepping into running and parked sagas, with test participants and a
controllable clock."""

from __future__ import annotations

import asyncio

from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import CUSTOMER_CANCELLED, Participant, SagaState, SagaStatus, Step, StepStatus
from domain.orchestration.orchestrator import Orchestrator
from tests.service.fakes import FakeRunner, settle
from tests.service.harness import POLICY, Harness


def recorded(harness: Harness, saga_id: str) -> list[str]:
    return [type(e).__name__ for e in harness.world.journal[saga_id]]


async def park_a_compensation(harness: Harness) -> str:
    """A shortage whose order cancellation fails on every attempt."""
    harness.gate.refusals[Participant.ORDERS] = POLICY.max_attempts
    saga_id = await harness.place(quantity=50)
    for attempt in range(1, POLICY.max_attempts):
        await harness.clock.advance(POLICY.backoff(attempt).total_seconds())
    assert harness.saga(saga_id).status is SagaStatus.NEEDS_ATTENTION
    return saga_id


async def test_abort_during_a_slow_confirmation_releases_stock_and_cancels(harness: Harness) -> None:
    harness.gate.delays[Participant.ORDERS] = 3
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.ORDER_CONFIRMING
    harness.gate.delays.clear()

    aborted = await harness.orchestrator.abort(
        saga_id, "address is a parking lot", Actor("operator-1", "operator")
    )
    assert isinstance(aborted, SagaState) and aborted.status is SagaStatus.COMPENSATING
    await settle()

    saga = harness.saga(saga_id)
    assert (saga.status, saga.failure_reason) == (SagaStatus.FAILED, "address is a parking lot")
    assert [(r.step, r.status) for r in saga.history] == [
        (Step.CREATE_ORDER, StepStatus.SUCCEEDED),
        (Step.RESERVE_STOCK, StepStatus.SUCCEEDED),
        (Step.CONFIRM_ORDER, StepStatus.ABANDONED),
        (Step.RELEASE_STOCK, StepStatus.SUCCEEDED),
        (Step.CANCEL_ORDER, StepStatus.SUCCEEDED),
    ]
    assert "confirm_order" not in harness.world.command_names()
    assert harness.world.stock["SKU-1"] == 10
    assert harness.world.orders[saga.order_id] == "CANCELLED"
    assert "SagaAborted" in recorded(harness, saga_id)
    await harness.clock.advance(60)  # the abandoned call's deadline passes: nothing more happens
    assert harness.saga(saga_id) == saga
    assert harness.orchestrator.running == 0


async def test_a_retried_compensation_finishes_the_saga_as_failed_with_its_first_reason() -> None:
    harness = Harness(stock=1)
    saga_id = await park_a_compensation(harness)

    retried = await harness.orchestrator.retry(saga_id, Actor("operator-1", "operator"))
    assert isinstance(retried, SagaState)
    await settle()

    saga = harness.saga(saga_id)
    assert (saga.status, saga.failure_reason) == (SagaStatus.FAILED, "insufficient stock: SKU-1")
    assert saga.attention_reason is None
    cancels = [(r.status, r.attempts) for r in saga.history if r.step is Step.CANCEL_ORDER]
    assert cancels == [(StepStatus.FAILED, POLICY.max_attempts), (StepStatus.SUCCEEDED, 1)]
    assert recorded(harness, saga_id)[-4:] == ["SagaParked", "SagaRetried", "StepStarted", "StepSucceeded"]
    assert harness.world.commands[-1] == ("cancel_order", f"{saga_id}:CANCEL_ORDER")
    await harness.orchestrator.stop()


async def test_a_retried_shipment_completes_the_saga(harness: Harness) -> None:
    harness.gate.refusals[Participant.SHIPMENT] = POLICY.max_attempts
    saga_id = await harness.place()
    for attempt in range(1, POLICY.max_attempts):
        await harness.clock.advance(POLICY.backoff(attempt).total_seconds())
    assert harness.saga(saga_id).status is SagaStatus.NEEDS_ATTENTION

    await harness.orchestrator.retry(saga_id, Actor("operator-1", "operator"))
    await settle()
    assert harness.saga(saga_id).status is SagaStatus.COMPLETED
    assert harness.world.command_names().count("create_shipment") == 1


async def test_the_customer_cancels_while_the_shipment_is_slow(harness: Harness) -> None:
    harness.gate.delays[Participant.SHIPMENT] = 3
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.SHIPMENT_CREATING

    await harness.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    await harness.clock.advance(3)

    saga = harness.saga(saga_id)
    assert (saga.status, saga.failure_reason) == (SagaStatus.FAILED, CUSTOMER_CANCELLED)
    assert harness.world.shipments == {}
    assert harness.world.stock["SKU-1"] == 10
    again = await harness.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    assert isinstance(again, Refused) and again.code is ProblemCode.ORDER_ALREADY_CANCELLED


async def test_a_dispatched_order_cannot_be_cancelled_and_nothing_changes(harness: Harness) -> None:
    saga_id = await harness.place()
    shipment_id = harness.saga(saga_id).shipment_id
    assert shipment_id is not None
    dispatched = await harness.orchestrator.dispatch_shipment(saga_id, shipment_id)
    assert isinstance(dispatched, SagaState) and dispatched.is_dispatched
    assert harness.world.command_names()[-3:] == ["dispatch_shipment", "dispatch_stock", "ship_order"]
    before = list(harness.world.journal[saga_id])

    refused = await harness.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED
    again = await harness.orchestrator.dispatch_shipment(saga_id, shipment_id)
    assert isinstance(again, Refused) and again.code is ProblemCode.SHIPMENT_ALREADY_DISPATCHED
    assert harness.world.journal[saga_id] == before
    await settle()
    assert harness.orchestrator.running == 0


async def test_a_completed_order_cancelled_before_dispatch_compensates_from_its_shipment(
    harness: Harness,
) -> None:
    saga_id = await harness.place()
    cancelled = await harness.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    assert isinstance(cancelled, SagaState) and cancelled.status is SagaStatus.COMPENSATING
    await settle()

    saga = harness.saga(saga_id)
    assert (saga.status, saga.failure_reason) == (SagaStatus.FAILED, CUSTOMER_CANCELLED)
    assert [r.step for r in saga.history[-3:]] == [
        Step.CANCEL_SHIPMENT,
        Step.RELEASE_STOCK,
        Step.CANCEL_ORDER,
    ]
    assert harness.world.stock["SKU-1"] == 10
    assert harness.world.shipment_statuses == {str(saga.shipment_id): "CANCELLED"}
    refused = await harness.orchestrator.dispatch_shipment(saga_id, str(saga.shipment_id))
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED


async def test_a_refused_intervention_leaves_the_saga_running(harness: Harness) -> None:
    harness.gate.delays[Participant.INVENTORY] = 3
    saga_id = await harness.place()

    refused = await harness.orchestrator.retry(saga_id, Actor("operator-1", "operator"))
    assert isinstance(refused, Refused) and refused.code is ProblemCode.SAGA_NOT_PARKED
    harness.gate.delays.clear()
    await harness.clock.advance(0)
    assert harness.saga(saga_id).status is SagaStatus.COMPLETED


async def test_an_unknown_saga_is_refused_and_starts_nothing(harness: Harness) -> None:
    refusals = [
        await harness.orchestrator.retry("nope", Actor("operator-1", "operator")),
        await harness.orchestrator.abort("nope", "why", Actor("operator-1", "operator")),
        await harness.orchestrator.cancel_order("nope", Actor("customer-1", "customer")),
    ]
    assert [r.code for r in refusals if isinstance(r, Refused)] == [ProblemCode.UNKNOWN_SAGA] * 3
    await settle()
    assert harness.orchestrator.running == 0 and harness.world.journal == {}


async def test_racing_interventions_take_turns_and_only_the_first_is_recorded(harness: Harness) -> None:
    harness.gate.delays[Participant.INVENTORY] = 3
    saga_id = await harness.place()

    results = await asyncio.gather(
        harness.orchestrator.abort(saga_id, "first", Actor("operator-1", "operator")),
        harness.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer")),
        harness.orchestrator.abort(saga_id, "third", Actor("operator-1", "operator")),
    )
    assert isinstance(results[0], SagaState)
    assert [r.code for r in results[1:] if isinstance(r, Refused)] == [
        ProblemCode.ORDER_ALREADY_CANCELLED,
        ProblemCode.SAGA_ALREADY_COMPENSATING,
    ]
    await settle()
    saga = harness.saga(saga_id)
    assert (saga.status, saga.failure_reason) == (SagaStatus.FAILED, "first")
    assert recorded(harness, saga_id).count("SagaAborted") == 1
    assert harness.world.command_names().count("cancel_order") == 1
    assert harness.orchestrator.running == 0


async def test_a_parked_saga_is_retried_after_a_restart() -> None:
    harness = Harness(stock=1)
    saga_id = await park_a_compensation(harness)
    await harness.orchestrator.stop()

    revived = Orchestrator(FakeRunner(harness.world), harness.clock, POLICY, harness.gate)
    await revived.retry(saga_id, Actor("operator-1", "operator"))
    await settle()
    assert harness.saga(saga_id).status is SagaStatus.FAILED
    await revived.stop()
