"""The orchestrator with test participants and a controllable clock: the saga scenarios of the design."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.model.commands import PlaceOrder
from domain.model.saga import Participant, SagaStatus, Step, StepStatus, fold, shipment_id_of
from domain.model.values import OrderLine
from domain.orchestration.orchestrator import Orchestrator
from domain.ports import IdempotencyKeyReused
from tests.service.fakes import FakeClock, FakeRunner, World, settle
from tests.service.harness import POLICY, Harness


async def test_happy_path_completes_with_the_participants_commands_in_order(harness: Harness) -> None:
    saga_id = await harness.place()

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.COMPLETED
    assert harness.world.command_names() == [
        "create_order",
        "reserve_stock",
        "confirm_order",
        "create_shipment",
    ]
    # The shipment's command names its warehouse: one command per warehouse the picks come from.
    assert [cid for _, cid in harness.world.commands] == [
        f"{saga_id}:{s}" for s in ("CREATE_ORDER", "RESERVE_STOCK", "CONFIRM_ORDER", "CREATE_SHIPMENT:W1")
    ]
    assert harness.world.stock["SKU-1"] == 8
    assert harness.world.orders[saga.order_id] == "CONFIRMED"
    assert saga.shipment_id == shipment_id_of(saga_id, "W1")
    assert harness.world.shipments == {saga.shipment_id: saga.order_id}
    assert harness.statuses(saga_id) == [
        SagaStatus.ORDER_CREATED,
        SagaStatus.STOCK_RESERVING,
        SagaStatus.STOCK_RESERVED,
        SagaStatus.ORDER_CONFIRMING,
        SagaStatus.ORDER_CONFIRMED,
        SagaStatus.SHIPMENT_CREATING,
        SagaStatus.COMPLETED,
    ]
    assert harness.seen[-1].after.status is SagaStatus.COMPLETED
    assert sum(len(c.events) for c in harness.seen) == len(harness.world.journal[saga_id])
    assert harness.orchestrator.running == 0


async def test_stock_shortage_cancels_the_order_and_fails_with_the_reason() -> None:
    harness = Harness(stock=1)
    saga_id = await harness.place(quantity=5)

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.FAILED
    assert saga.failure_reason == "insufficient stock: SKU-1"
    assert harness.world.command_names() == ["create_order", "reserve_stock", "cancel_order"]
    assert harness.world.orders[saga.order_id] == "CANCELLED"
    assert harness.world.stock["SKU-1"] == 1
    assert harness.statuses(saga_id) == [
        SagaStatus.ORDER_CREATED,
        SagaStatus.STOCK_RESERVING,
        SagaStatus.STOCK_RESERVATION_FAILED,
        SagaStatus.COMPENSATING,
        SagaStatus.COMPENSATING,
        SagaStatus.FAILED,
    ]


async def test_reservation_timeout_cancels_the_order_and_fails_saying_it_timed_out(harness: Harness) -> None:
    harness.gate.delays[Participant.INVENTORY] = 60
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.STOCK_RESERVING

    await harness.clock.advance(POLICY.reserve_timeout.total_seconds() - 1)
    assert harness.saga(saga_id).status is SagaStatus.STOCK_RESERVING
    await harness.clock.advance(1)

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.FAILED
    assert "timed out" in (saga.failure_reason or "")
    assert harness.world.command_names() == ["create_order", "cancel_order"]
    assert harness.world.stock["SKU-1"] == 10


async def test_confirmation_timeout_releases_stock_and_cancels_the_order(harness: Harness) -> None:
    harness.gate.delays[Participant.ORDERS] = 60
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.ORDER_CONFIRMING
    assert harness.world.stock["SKU-1"] == 8

    harness.gate.delays.clear()
    harness.gate.delays[Participant.ORDERS] = 0
    await harness.clock.advance(POLICY.confirm_timeout.total_seconds())

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.FAILED
    assert "CONFIRM_ORDER timed out" in (saga.failure_reason or "")
    assert harness.world.command_names() == ["create_order", "reserve_stock", "release_stock", "cancel_order"]
    assert harness.world.stock["SKU-1"] == 10
    assert harness.world.orders[saga.order_id] == "CANCELLED"


async def test_shipment_timeout_is_retried_then_completes(harness: Harness) -> None:
    harness.gate.delays[Participant.SHIPMENT] = 60
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.SHIPMENT_CREATING

    await harness.clock.advance(POLICY.shipment_timeout.total_seconds())
    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.SHIPMENT_CREATING
    assert saga.retry_at == harness.clock.now() + POLICY.retry_backoff

    harness.gate.delays.clear()
    await harness.clock.advance(POLICY.retry_backoff.total_seconds())

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.COMPLETED
    shipment = next(r for r in saga.history if r.step is Step.CREATE_SHIPMENT)
    assert (shipment.attempts, shipment.status) == (2, StepStatus.SUCCEEDED)
    assert harness.world.command_names().count("create_shipment") == 1


async def test_transient_failures_are_retried_with_backoff_then_succeed(harness: Harness) -> None:
    harness.gate.refusals[Participant.INVENTORY] = 2
    saga_id = await harness.place()
    assert harness.saga(saga_id).status is SagaStatus.STOCK_RESERVING

    await harness.clock.advance(POLICY.retry_backoff.total_seconds())  # attempt 2 fails, backs off 2 s
    assert harness.saga(saga_id).status is SagaStatus.STOCK_RESERVING
    await harness.clock.advance(2 * POLICY.retry_backoff.total_seconds())

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.COMPLETED
    reserve = next(r for r in saga.history if r.step is Step.RESERVE_STOCK)
    assert reserve.attempts == 3


async def test_a_participant_that_raises_rolls_back_and_counts_as_a_failed_attempt(harness: Harness) -> None:
    harness.world.failures["confirm_order"] = [RuntimeError("disk on fire")]
    saga_id = await harness.place()
    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.ORDER_CONFIRMING
    assert "disk on fire" in (saga.history[-1].last_error or "")

    await harness.clock.advance(POLICY.retry_backoff.total_seconds())
    assert harness.saga(saga_id).status is SagaStatus.COMPLETED


async def test_a_compensation_that_keeps_failing_parks_the_saga_for_an_operator() -> None:
    harness = Harness(stock=1)
    harness.gate.refusals[Participant.ORDERS] = 99
    saga_id = await harness.place(quantity=5)
    for attempt in range(1, POLICY.max_attempts):
        await harness.clock.advance(POLICY.backoff(attempt).total_seconds())

    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.NEEDS_ATTENTION
    assert "CANCEL_ORDER failed after 3 attempts" in (saga.attention_reason or "")
    assert saga.failure_reason == "insufficient stock: SKU-1"
    assert harness.orchestrator.running == 0
    await harness.orchestrator.stop()


async def test_the_same_idempotency_key_returns_the_first_order_and_starts_nothing(harness: Harness) -> None:
    first = await harness.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),), "key-1"))
    again = await harness.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),), "key-1"))
    assert (again.saga_id, again.order_id, again.replayed) == (first.saga_id, first.order_id, True)
    assert len(harness.world.journal) == 1

    with pytest.raises(IdempotencyKeyReused):
        await harness.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 2),), "key-1"))


async def test_a_restarted_orchestrator_resumes_a_saga_from_its_journal(harness: Harness) -> None:
    harness.gate.delays[Participant.ORDERS] = 3
    saga_id = await harness.place()
    await harness.orchestrator.stop()  # the process dies while confirmation is slow
    assert harness.saga(saga_id).status is SagaStatus.ORDER_CONFIRMING

    harness.gate.delays.clear()
    revived = Orchestrator(FakeRunner(harness.world), harness.clock, POLICY, harness.gate)
    revived.resume([saga_id])
    await settle()
    assert harness.saga(saga_id).status is SagaStatus.COMPLETED
    assert harness.world.command_names() == [
        "create_order",
        "reserve_stock",
        "confirm_order",
        "create_shipment",
    ]
    await revived.stop()


async def test_a_deadline_that_passed_while_down_fires_on_resume(harness: Harness) -> None:
    harness.gate.delays[Participant.INVENTORY] = 60
    saga_id = await harness.place()
    await harness.orchestrator.stop()
    harness.gate.delays.clear()
    await harness.clock.advance((POLICY.reserve_timeout + timedelta(seconds=1)).total_seconds())

    revived = Orchestrator(FakeRunner(harness.world), harness.clock, POLICY, harness.gate)
    revived.resume([saga_id])
    await settle()
    saga = harness.saga(saga_id)
    assert saga.status is SagaStatus.FAILED
    assert "RESERVE_STOCK timed out" in (saga.failure_reason or "")
    assert "reserve_stock" not in harness.world.command_names()
    await revived.stop()


async def test_without_a_gate_the_steps_after_placement_share_one_transaction() -> None:
    world = World(stock={"SKU-1": 5})
    runner = FakeRunner(world)
    orchestrator = Orchestrator(runner, FakeClock(), POLICY)
    placed = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))
    await settle()

    assert fold(placed.saga_id, world.journal[placed.saga_id]).status is SagaStatus.COMPLETED
    assert runner.transactions == 2
    assert world.command_names() == ["create_order", "reserve_stock", "confirm_order", "create_shipment"]


async def test_a_placement_that_may_chain_makes_the_sagas_calls_in_its_own_transaction() -> None:
    world, seen = World(stock={"SKU-1": 5}), []
    runner = FakeRunner(world)
    orchestrator = Orchestrator(runner, FakeClock(), POLICY, listeners=[seen.append], chain_placement=True)
    placed = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))

    # Settled when place_order returns: there is nothing left to wait for, nor to drive.
    assert placed.state is not None and placed.state.status is SagaStatus.COMPLETED
    assert orchestrator.running == 0
    assert runner.transactions == 1
    assert [len(change.events) for change in seen] == [len(world.journal[placed.saga_id])]
    assert world.command_names() == ["create_order", "reserve_stock", "confirm_order", "create_shipment"]
    await settle()
    assert orchestrator.running == 0 and runner.transactions == 1


class EveryLease:
    def holds(self, saga_id: str) -> bool:
        return True


def test_a_placement_makes_no_call_where_several_processes_write() -> None:
    with pytest.raises(ValueError, match="one process"):
        Orchestrator(FakeRunner(World()), FakeClock(), POLICY, leases=EveryLease(), chain_placement=True)


async def test_a_placement_makes_no_call_where_a_gate_admits_each(harness: Harness) -> None:
    harness.gate.delays[Participant.INVENTORY] = 60
    orchestrator = Orchestrator(
        FakeRunner(harness.world), harness.clock, POLICY, harness.gate, chain_placement=True
    )
    placed = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))

    assert placed.state is not None and placed.state.status is SagaStatus.STOCK_RESERVING
    assert harness.world.command_names() == ["create_order"]
    await orchestrator.stop()


@pytest.mark.parametrize("chain_placement", [False, True])
async def test_a_failure_inside_a_chain_is_charged_to_the_step_that_failed(chain_placement: bool) -> None:
    # Down for the driver's chain from the reservation, then from the confirmation, then for the
    # confirmation alone; first for the placement's chain too, where there is one.
    failures = [RuntimeError("orders down")] * (3 + chain_placement)
    world = World(stock={"SKU-1": 5}, failures={"confirm_order": failures})
    clock = FakeClock()
    orchestrator = Orchestrator(FakeRunner(world), clock, POLICY, chain_placement=chain_placement)
    placed = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))
    # A placement whose chain failed was rolled back with it, and then placed alone.
    assert placed.state is not None and placed.state.status is SagaStatus.STOCK_RESERVING
    await settle()

    saga = fold(placed.saga_id, world.journal[placed.saga_id])
    assert saga.status is SagaStatus.ORDER_CONFIRMING
    assert [(r.step, r.status) for r in saga.history][1:] == [
        (Step.RESERVE_STOCK, StepStatus.SUCCEEDED),
        (Step.CONFIRM_ORDER, StepStatus.RETRYING),
    ]
    assert "orders down" in (saga.history[-1].last_error or "")
    assert world.stock["SKU-1"] == 4

    await clock.advance(POLICY.retry_backoff.total_seconds())
    assert fold(placed.saga_id, world.journal[placed.saga_id]).status is SagaStatus.COMPLETED
    assert world.stock["SKU-1"] == 4
    await orchestrator.stop()
