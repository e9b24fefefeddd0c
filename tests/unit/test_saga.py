"""Behaviour of the order saga as data: every state and message pair, then properties of whole runs.

The saga is driven here the way the orchestrator drives it: a participant's outcome (or a timeout)
becomes events through `on_outcome` / `on_timeout`, then the `Emit` actions of `next_action` are
recorded until the saga has to call a participant, wait, or stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.model.saga import (
    COMPENSATION_OF,
    FORWARD_STEPS,
    Action,
    Call,
    CompensationStarted,
    Emit,
    Finished,
    Outcome,
    Participant,
    Rejected,
    SagaAborted,
    SagaChange,
    SagaEvent,
    SagaParked,
    SagaPolicy,
    SagaStarted,
    SagaState,
    SagaStatus,
    ShipmentCreated,
    ShipmentRejected,
    ShipmentStatus,
    Step,
    StepFailed,
    StepRecord,
    StepStarted,
    StepStatus,
    StepSucceeded,
    StepTimedOut,
    Succeeded,
    Unavailable,
    Wait,
    evolve,
    fold,
    next_action,
    on_outcome,
    on_shipment_outcomes,
    on_timeout,
    replay,
    shipment_id_of,
    start,
)
from domain.model.values import OrderLine, Pick

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
POLICY = SagaPolicy()
SAGA_ID = "saga-1"
ORDER_ID = "order-1"
CUSTOMER_ID = "customer-1"
LINES = (OrderLine("SKU-1", 2), OrderLine("SKU-2", 1))
PICKS = (Pick("W1", "A", "SKU-1", 2), Pick("W2", "C", "SKU-2", 1))
W1_SHIPMENT = shipment_id_of(SAGA_ID, "W1")
W2_SHIPMENT = shipment_id_of(SAGA_ID, "W2")

RESERVE = Step.RESERVE_STOCK
CONFIRM = Step.CONFIRM_ORDER
SHIP = Step.CREATE_SHIPMENT
RELEASE = Step.RELEASE_STOCK
CANCEL = Step.CANCEL_ORDER
UNSHIP = Step.CANCEL_SHIPMENT
COMPENSATIONS = (RELEASE, CANCEL)

ONE_SECOND = timedelta(seconds=1)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def success_for(step: Step) -> Succeeded:
    return Succeeded(picks=PICKS) if step is RESERVE else Succeeded()


class Run:
    """One saga, its journal, and a clock, advanced like the orchestrator advances it."""

    def __init__(self, policy: SagaPolicy = POLICY, now: datetime = T0) -> None:
        self.policy = policy
        self.now = now
        first = SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, now)
        self.journal: list[SagaEvent] = [first]
        self.state = start(SAGA_ID, first)
        self.states = [self.state]  # the state after each journal entry
        self.calls: list[Call] = []

    def record(self, events: Iterable[SagaEvent]) -> None:
        for event in events:
            self.state = evolve(self.state, event)
            self.journal.append(event)
            self.states.append(self.state)

    def action(self) -> Action:
        return next_action(self.state, self.now, self.policy)

    def settle(self) -> Action:
        """Record every transition that needs no participant; return the action that stopped it."""
        while isinstance(action := self.action(), Emit):
            self.record(action.events)
        return action

    def call(self) -> Call:
        action = self.settle()
        assert isinstance(action, Call), action
        self.calls.append(action)
        return action

    def answer(self, outcome: Outcome, after: timedelta = ONE_SECOND) -> tuple[SagaEvent, ...]:
        """The in-flight call returns `outcome` `after` it was made (for each of its shipments, for a
        shipment step); returns the events it produced."""
        call = self.call()
        self.now += after
        if call.step in (SHIP, UNSHIP):
            shipments = self.state.shipments_for(call.step)
            return self.record_answers({s.shipment_id: outcome for s in shipments})
        events = on_outcome(self.state, outcome, self.now, self.policy)
        self.record(events)
        return events

    def answer_each(self, outcomes: dict[str, Outcome]) -> tuple[SagaEvent, ...]:
        """The in-flight shipment step's commands answer, per shipment id, a second after it began."""
        self.call()
        self.now += ONE_SECOND
        return self.record_answers(outcomes)

    def record_answers(self, outcomes: dict[str, Outcome]) -> tuple[SagaEvent, ...]:
        events = on_shipment_outcomes(self.state, outcomes, self.now, self.policy)
        self.record(events)
        return events

    def succeed(self) -> tuple[SagaEvent, ...]:
        call = self.call()
        self.calls.pop()
        return self.answer(success_for(call.step))

    def time_out(self) -> tuple[SagaEvent, ...]:
        call = self.call()
        self.now = call.deadline
        events = on_timeout(self.state, self.now, self.policy)
        self.record(events)
        return events

    def wait_for_retry(self) -> Action:
        action = self.action()
        assert isinstance(action, Wait), action
        self.now = action.until
        return self.settle()

    def fail_transiently(self, times: int, reason: str = "participant down") -> None:
        """`times` attempts in a row fail with a transient error, each retried after its backoff."""
        for _ in range(times):
            self.answer(Unavailable(reason))
            self.wait_for_retry()

    def statuses(self) -> list[SagaStatus]:
        """The statuses the saga went through, repeats collapsed."""
        seen: list[SagaStatus] = []
        for state in self.states:
            if not seen or seen[-1] is not state.status:
                seen.append(state.status)
        return seen


def run_to(step: Step, policy: SagaPolicy = POLICY) -> Run:
    """A saga whose first attempt at `step` is in flight (compensations reached by a rejection)."""
    run = Run(policy)
    if step is CANCEL:
        run.answer(Rejected("out of SKU-1"))
    elif step is RELEASE:
        run.succeed()
        run.answer(Rejected("customer blocked"))
    else:
        for earlier in FORWARD_STEPS[1 : FORWARD_STEPS.index(step)]:
            assert run.call().step is earlier
            run.calls.pop()
            run.succeed()
    call = run.call()
    run.calls.pop()
    assert (call.step, call.attempt) == (step, 1)
    return run


def run_to_cancel_after_release(policy: SagaPolicy = POLICY) -> Run:
    run = run_to(RELEASE, policy)
    run.succeed()
    call = run.call()
    run.calls.pop()
    assert (call.step, call.attempt) == (CANCEL, 1)
    return run


def last_record(state: SagaState) -> StepRecord:
    return state.history[-1]


def record_of(state: SagaState, step: Step) -> StepRecord:
    (record,) = [r for r in state.history if r.step is step]
    return record


def history_steps(state: SagaState) -> list[Step]:
    return [r.step for r in state.history]


# --- starting ---------------------------------------------------------------------------------------


def test_a_new_saga_has_its_order_created_and_nothing_in_flight() -> None:
    state = start(SAGA_ID, SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, T0))

    assert state.status is SagaStatus.ORDER_CREATED
    assert (state.saga_id, state.order_id, state.customer_id, state.lines) == (
        SAGA_ID,
        ORDER_ID,
        CUSTOMER_ID,
        LINES,
    )
    assert state.version == 1
    assert state.started_at == state.updated_at == T0
    assert state.done == (Step.CREATE_ORDER,)
    assert state.history == (StepRecord(Step.CREATE_ORDER, StepStatus.SUCCEEDED, 1, T0, T0),)
    assert state.step is None and state.attempt == 0
    assert state.compensations == ()
    assert state.failure_reason is None
    assert state.next_wakeup is None
    assert not state.is_terminal
    assert not state.order_cancelled


def test_a_new_saga_begins_by_starting_the_stock_reservation_with_its_deadline() -> None:
    state = Run().state

    assert next_action(state, T0, POLICY) == Emit((StepStarted(RESERVE, 1, T0 + seconds(10), T0),))


def test_starting_the_reservation_puts_the_saga_in_stock_reserving_and_calls_inventory() -> None:
    run = Run()
    run.record([StepStarted(RESERVE, 1, T0 + seconds(10), T0)])
    state = run.state

    assert state.status is SagaStatus.STOCK_RESERVING
    assert (state.step, state.attempt, state.deadline, state.retry_at) == (RESERVE, 1, T0 + seconds(10), None)
    assert state.next_wakeup == T0 + seconds(10)
    assert last_record(state) == StepRecord(RESERVE, StepStatus.RUNNING, 1, T0)
    action = run.action()
    assert action == Call(RESERVE, 1, T0 + seconds(10))
    assert isinstance(action, Call) and action.participant is Participant.INVENTORY


@pytest.mark.parametrize(
    ("step", "status", "timeout", "participant"),
    [
        (RESERVE, SagaStatus.STOCK_RESERVING, seconds(10), Participant.INVENTORY),
        (CONFIRM, SagaStatus.ORDER_CONFIRMING, seconds(5), Participant.ORDERS),
        (SHIP, SagaStatus.SHIPMENT_CREATING, seconds(5), Participant.SHIPMENT),
        (RELEASE, SagaStatus.COMPENSATING, seconds(5), Participant.INVENTORY),
        (CANCEL, SagaStatus.COMPENSATING, seconds(5), Participant.ORDERS),
    ],
)
def test_each_step_in_flight_has_its_status_deadline_and_participant(
    step: Step, status: SagaStatus, timeout: timedelta, participant: Participant
) -> None:
    run = run_to(step)
    started = run.journal[-1]
    call = run.action()

    assert started == StepStarted(step, 1, run.now + timeout, run.now)
    assert run.state.status is status
    assert run.state.next_wakeup == run.now + timeout
    assert last_record(run.state) == StepRecord(step, StepStatus.RUNNING, 1, run.now)
    assert call == Call(step, 1, run.now + timeout)
    assert isinstance(call, Call) and call.participant is participant


def test_the_policy_timeouts_and_backoff() -> None:
    policy = SagaPolicy(
        reserve_timeout=seconds(7),
        confirm_timeout=seconds(8),
        shipment_timeout=seconds(9),
        compensation_timeout=seconds(4),
        retry_backoff=seconds(3),
    )

    assert [policy.timeout(s) for s in (RESERVE, CONFIRM, SHIP, RELEASE, CANCEL)] == [
        seconds(7),
        seconds(8),
        seconds(9),
        seconds(4),
        seconds(4),
    ]
    assert [policy.backoff(n) for n in (1, 2, 3)] == [seconds(3), seconds(6), seconds(9)]
    assert (POLICY.max_attempts, POLICY.retry_backoff) == (3, seconds(1))


# --- the happy path ---------------------------------------------------------------------------------


def test_reserved_stock_records_the_picks_and_moves_on_to_confirming_the_order() -> None:
    run = run_to(RESERVE)

    events = run.answer(Succeeded(picks=PICKS))

    assert events == (StepSucceeded(RESERVE, T0 + ONE_SECOND, PICKS),)
    state = run.state
    assert state.status is SagaStatus.STOCK_RESERVED
    assert state.picks == PICKS
    assert state.done == (Step.CREATE_ORDER, RESERVE)
    assert (state.step, state.attempt, state.deadline, state.next_wakeup) == (None, 0, None, None)
    assert last_record(state) == StepRecord(RESERVE, StepStatus.SUCCEEDED, 1, T0, T0 + ONE_SECOND)
    assert run.action() == Emit((StepStarted(CONFIRM, 1, run.now + seconds(5), run.now),))


def test_a_confirmed_order_moves_on_to_creating_the_shipment() -> None:
    run = run_to(CONFIRM)
    began = run.now

    events = run.answer(Succeeded())

    assert events == (StepSucceeded(CONFIRM, run.now),)
    state = run.state
    assert state.status is SagaStatus.ORDER_CONFIRMED
    assert state.done == (Step.CREATE_ORDER, RESERVE, CONFIRM)
    assert state.picks == PICKS  # kept from the reservation
    assert state.next_wakeup is None
    assert last_record(state) == StepRecord(CONFIRM, StepStatus.SUCCEEDED, 1, began, run.now)
    assert run.action() == Emit((StepStarted(SHIP, 1, run.now + seconds(5), run.now),))


def test_a_created_shipment_completes_the_saga() -> None:
    run = run_to(SHIP)

    events = run.answer(Succeeded())

    now = run.now
    # One event says that every shipment requested was created.
    assert events == (StepSucceeded(SHIP, now),)
    state = run.state
    assert state.status is SagaStatus.COMPLETED
    assert state.is_terminal
    assert state.done == FORWARD_STEPS
    assert state.shipment_id == W1_SHIPMENT
    assert [(s.warehouse_code, s.status, s.picks) for s in state.shipments] == [
        ("W1", ShipmentStatus.CREATED, PICKS[:1]),
        ("W2", ShipmentStatus.CREATED, PICKS[1:]),
    ]
    assert state.picks == PICKS
    assert state.failure_reason is None
    assert state.compensations == ()
    assert state.next_wakeup is None
    assert history_steps(state) == list(FORWARD_STEPS)
    assert all(r.status is StepStatus.SUCCEEDED and r.attempts == 1 for r in state.history)
    assert run.action() == Finished()


def test_the_happy_path_goes_through_every_forward_status_in_order() -> None:
    run = Run()
    for _ in range(3):
        run.succeed()

    assert run.statuses() == [
        SagaStatus.ORDER_CREATED,
        SagaStatus.STOCK_RESERVING,
        SagaStatus.STOCK_RESERVED,
        SagaStatus.ORDER_CONFIRMING,
        SagaStatus.ORDER_CONFIRMED,
        SagaStatus.SHIPMENT_CREATING,
        SagaStatus.COMPLETED,
    ]
    assert run.state.version == len(run.journal) == 7
    assert fold(SAGA_ID, run.journal) == run.state


# --- RESERVE_STOCK failing ----------------------------------------------------------------------------


def test_a_stock_shortage_fails_the_reservation_without_retrying_and_starts_compensating() -> None:
    run = run_to(RESERVE)

    events = run.answer(Rejected("not enough SKU-1"))

    now = run.now
    assert events == (
        StepFailed(RESERVE, 1, "not enough SKU-1", False, None, now),
        CompensationStarted("not enough SKU-1", now),
    )
    assert run.states[-2].status is SagaStatus.STOCK_RESERVATION_FAILED
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (CANCEL,)
    assert state.failure_reason == "not enough SKU-1"
    assert state.step is None and state.retry_at is None and state.next_wakeup is None
    assert state.done == (Step.CREATE_ORDER,)
    assert last_record(state) == StepRecord(RESERVE, StepStatus.FAILED, 1, T0, now, "not enough SKU-1")


def test_a_stock_shortage_compensates_by_cancelling_the_order_only() -> None:
    run = run_to(RESERVE)
    run.answer(Rejected("not enough SKU-1"))

    assert run.action() == Emit((StepStarted(CANCEL, 1, run.now + seconds(5), run.now),))
    assert run.call() == Call(CANCEL, 1, run.now + seconds(5))


def test_a_stock_shortage_ends_failed_with_its_reason_once_the_order_is_cancelled() -> None:
    run = run_to(RESERVE)
    run.answer(Rejected("not enough SKU-1"))
    run.succeed()

    state = run.state
    assert state.status is SagaStatus.FAILED
    assert state.is_terminal
    assert state.failure_reason == "not enough SKU-1"
    assert state.order_cancelled
    assert state.compensations == ()
    assert history_steps(state) == [Step.CREATE_ORDER, RESERVE, CANCEL]
    assert RELEASE not in history_steps(state)
    assert run.statuses() == [
        SagaStatus.ORDER_CREATED,
        SagaStatus.STOCK_RESERVING,
        SagaStatus.STOCK_RESERVATION_FAILED,
        SagaStatus.COMPENSATING,
        SagaStatus.FAILED,
    ]
    assert run.action() == Finished()


def test_an_unavailable_inventory_is_retried_after_the_backoff() -> None:
    run = run_to(RESERVE)

    events = run.answer(Unavailable("inventory down"))

    now = run.now
    assert events == (StepFailed(RESERVE, 1, "inventory down", True, now + seconds(1), now),)
    state = run.state
    assert state.status is SagaStatus.STOCK_RESERVING
    assert (state.step, state.attempt) == (RESERVE, 1)
    assert state.deadline is None
    assert state.retry_at == state.next_wakeup == now + seconds(1)
    assert state.failure_reason is None
    assert last_record(state) == StepRecord(RESERVE, StepStatus.RETRYING, 1, T0, None, "inventory down")
    assert run.action() == Wait(now + seconds(1))


def test_waiting_for_a_retry_waits_until_its_time_then_starts_the_next_attempt() -> None:
    run = run_to(RESERVE)
    run.answer(Unavailable("inventory down"))
    retry_at = run.state.retry_at
    assert retry_at is not None

    assert next_action(run.state, retry_at - timedelta(microseconds=1), POLICY) == Wait(retry_at)
    assert next_action(run.state, retry_at, POLICY) == Emit(
        (StepStarted(RESERVE, 2, retry_at + seconds(10), retry_at),)
    )
    later = retry_at + seconds(30)
    assert next_action(run.state, later, POLICY) == Emit(
        (StepStarted(RESERVE, 2, later + seconds(10), later),)
    )


def test_the_retried_attempt_is_counted_on_the_same_history_record() -> None:
    run = run_to(RESERVE)
    run.answer(Unavailable("inventory down"))

    action = run.wait_for_retry()

    assert action == Call(RESERVE, 2, run.now + seconds(10))
    state = run.state
    assert state.status is SagaStatus.STOCK_RESERVING
    assert (state.attempt, state.retry_at, state.deadline) == (2, None, run.now + seconds(10))
    assert state.next_wakeup == run.now + seconds(10)
    assert last_record(state) == StepRecord(RESERVE, StepStatus.RUNNING, 2, T0, None, "inventory down")
    assert history_steps(state) == [Step.CREATE_ORDER, RESERVE]


def test_the_backoff_grows_with_each_failed_attempt() -> None:
    policy = SagaPolicy(max_attempts=4, retry_backoff=seconds(3))
    run = run_to(RESERVE, policy)
    waits = []
    for _ in range(3):
        run.answer(Unavailable("inventory down"))
        retry_at = run.state.retry_at
        assert retry_at is not None
        waits.append(retry_at - run.now)
        run.wait_for_retry()

    assert waits == [seconds(3), seconds(6), seconds(9)]
    assert run.call() == Call(RESERVE, 4, run.now + seconds(10))


def test_a_reservation_still_unavailable_after_max_attempts_compensates_by_cancelling_the_order() -> None:
    run = run_to(RESERVE)
    run.fail_transiently(2, "inventory down")

    events = run.answer(Unavailable("inventory down"))

    now = run.now
    reason = "RESERVE_STOCK failed after 3 attempts: inventory down"
    assert events == (
        StepFailed(RESERVE, 3, "inventory down", True, None, now),
        CompensationStarted(reason, now),
    )
    assert run.states[-2].status is SagaStatus.STOCK_RESERVATION_FAILED
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (CANCEL,)
    assert state.failure_reason == reason
    assert record_of(state, RESERVE) == StepRecord(RESERVE, StepStatus.FAILED, 3, T0, now, "inventory down")
    assert run.action() == Emit((StepStarted(CANCEL, 1, now + seconds(5), now),))

    run.succeed()
    assert run.state.status is SagaStatus.FAILED
    assert run.state.failure_reason == reason


def test_a_single_attempt_policy_never_retries_an_unavailable_participant() -> None:
    run = run_to(RESERVE, SagaPolicy(max_attempts=1))

    events = run.answer(Unavailable("inventory down"))

    assert events == (
        StepFailed(RESERVE, 1, "inventory down", True, None, run.now),
        CompensationStarted("RESERVE_STOCK failed after 1 attempts: inventory down", run.now),
    )


def test_a_rejection_after_a_transient_failure_is_not_retried() -> None:
    run = run_to(RESERVE)
    run.fail_transiently(1, "inventory down")

    events = run.answer(Rejected("not enough SKU-2"))

    assert events == (
        StepFailed(RESERVE, 2, "not enough SKU-2", False, None, run.now),
        CompensationStarted("not enough SKU-2", run.now),
    )
    assert record_of(run.state, RESERVE).status is StepStatus.FAILED
    assert record_of(run.state, RESERVE).attempts == 2
    assert run.state.compensations == (CANCEL,)


def test_reservation_timeout_compensates_by_cancelling_the_order_without_releasing_stock() -> None:
    run = run_to(RESERVE)

    events = run.time_out()

    deadline = T0 + seconds(10)
    reason = "RESERVE_STOCK timed out after 10s"
    assert events == (StepTimedOut(RESERVE, 1, reason, None, deadline), CompensationStarted(reason, deadline))
    assert run.states[-2].status is SagaStatus.STOCK_RESERVATION_FAILED
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (CANCEL,)
    assert state.failure_reason == reason
    assert state.next_wakeup is None
    assert last_record(state) == StepRecord(RESERVE, StepStatus.TIMED_OUT, 1, T0, deadline, reason)
    assert run.action() == Emit((StepStarted(CANCEL, 1, deadline + seconds(5), deadline),))

    run.succeed()
    assert run.state.status is SagaStatus.FAILED
    assert run.state.failure_reason == reason
    assert history_steps(run.state) == [Step.CREATE_ORDER, RESERVE, CANCEL]


def test_reservation_timeout_is_not_retried_even_with_attempts_left() -> None:
    run = run_to(RESERVE, SagaPolicy(max_attempts=5, reserve_timeout=seconds(2)))
    run.fail_transiently(1)

    events = run.time_out()

    reason = "RESERVE_STOCK timed out after 2s"
    assert events == (StepTimedOut(RESERVE, 2, reason, None, run.now), CompensationStarted(reason, run.now))
    assert record_of(run.state, RESERVE).status is StepStatus.TIMED_OUT
    assert record_of(run.state, RESERVE).attempts == 2


# --- CONFIRM_ORDER failing ----------------------------------------------------------------------------


def test_a_rejected_confirmation_compensates_by_releasing_stock_then_cancelling_the_order() -> None:
    run = run_to(CONFIRM)
    began = run.now

    events = run.answer(Rejected("customer blocked"))

    now = run.now
    assert events == (
        StepFailed(CONFIRM, 1, "customer blocked", False, None, now),
        CompensationStarted("customer blocked", now),
    )
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (RELEASE, CANCEL)
    assert state.failure_reason == "customer blocked"
    assert state.done == (Step.CREATE_ORDER, RESERVE)
    assert last_record(state) == StepRecord(CONFIRM, StepStatus.FAILED, 1, began, now, "customer blocked")
    assert run.action() == Emit((StepStarted(RELEASE, 1, now + seconds(5), now),))


def test_a_failed_confirmation_ends_failed_after_releasing_stock_and_cancelling_the_order() -> None:
    run = run_to(CONFIRM)
    run.answer(Rejected("customer blocked"))
    run.succeed()
    run.succeed()

    state = run.state
    assert state.status is SagaStatus.FAILED
    assert state.failure_reason == "customer blocked"
    assert state.order_cancelled
    assert history_steps(state) == [Step.CREATE_ORDER, RESERVE, CONFIRM, RELEASE, CANCEL]
    assert [r.status for r in state.history[-2:]] == [StepStatus.SUCCEEDED, StepStatus.SUCCEEDED]
    assert run.statuses() == [
        SagaStatus.ORDER_CREATED,
        SagaStatus.STOCK_RESERVING,
        SagaStatus.STOCK_RESERVED,
        SagaStatus.ORDER_CONFIRMING,
        SagaStatus.COMPENSATING,
        SagaStatus.FAILED,
    ]
    assert run.action() == Finished()


def test_an_unavailable_order_service_is_retried_when_confirming() -> None:
    run = run_to(CONFIRM)

    events = run.answer(Unavailable("orders down"))

    now = run.now
    assert events == (StepFailed(CONFIRM, 1, "orders down", True, now + seconds(1), now),)
    assert run.state.status is SagaStatus.ORDER_CONFIRMING
    assert run.state.next_wakeup == now + seconds(1)
    assert last_record(run.state).status is StepStatus.RETRYING
    assert run.action() == Wait(now + seconds(1))
    assert run.wait_for_retry() == Call(CONFIRM, 2, now + seconds(1) + seconds(5))


def test_a_confirmation_still_unavailable_after_max_attempts_releases_stock_and_cancels_the_order() -> None:
    run = run_to(CONFIRM)
    run.fail_transiently(2, "orders down")

    events = run.answer(Unavailable("orders down"))

    reason = "CONFIRM_ORDER failed after 3 attempts: orders down"
    assert events == (
        StepFailed(CONFIRM, 3, "orders down", True, None, run.now),
        CompensationStarted(reason, run.now),
    )
    assert run.state.status is SagaStatus.COMPENSATING
    assert run.state.compensations == (RELEASE, CANCEL)
    assert run.state.failure_reason == reason
    assert record_of(run.state, CONFIRM).status is StepStatus.FAILED
    assert record_of(run.state, CONFIRM).attempts == 3


def test_confirmation_timeout_compensates_by_releasing_stock_and_cancelling_the_order() -> None:
    run = run_to(CONFIRM)

    events = run.time_out()

    reason = "CONFIRM_ORDER timed out after 5s"
    assert events == (StepTimedOut(CONFIRM, 1, reason, None, run.now), CompensationStarted(reason, run.now))
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (RELEASE, CANCEL)
    assert state.failure_reason == reason
    assert last_record(state).status is StepStatus.TIMED_OUT

    run.succeed()
    assert run.state.status is SagaStatus.COMPENSATING
    run.succeed()
    assert run.state.status is SagaStatus.FAILED
    assert run.state.failure_reason == reason
    assert history_steps(run.state)[-2:] == [RELEASE, CANCEL]


def test_confirmation_timeout_is_not_retried_even_with_attempts_left() -> None:
    run = run_to(CONFIRM, SagaPolicy(max_attempts=5))
    run.fail_transiently(2)

    events = run.time_out()

    assert isinstance(events[0], StepTimedOut) and events[0].retry_at is None
    assert events[0].attempt == 3
    assert isinstance(events[1], CompensationStarted)


# --- CREATE_SHIPMENT: one shipment per warehouse ------------------------------------------------------


def test_starting_the_shipment_step_requests_one_shipment_per_warehouse() -> None:
    run = run_to(SHIP)

    assert [(s.shipment_id, s.warehouse_code, s.status) for s in run.state.shipments] == [
        (W1_SHIPMENT, "W1", ShipmentStatus.REQUESTED),
        (W2_SHIPMENT, "W2", ShipmentStatus.REQUESTED),
    ]
    assert run.state.shipments_for(SHIP) == run.state.shipments
    assert run.state.shipment_id is None


def test_a_rejected_shipment_cancels_the_created_ones_then_releases_stock_and_cancels_the_order() -> None:
    run = run_to(SHIP)

    events = run.answer_each({W1_SHIPMENT: Succeeded(), W2_SHIPMENT: Rejected("W2: address unknown")})

    now = run.now
    assert events == (
        ShipmentCreated(W1_SHIPMENT, now),
        ShipmentRejected(W2_SHIPMENT, "W2: address unknown", now),
        StepFailed(SHIP, 1, "W2: address unknown", False, None, now),
        CompensationStarted("W2: address unknown", now),
    )
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (UNSHIP, RELEASE, CANCEL)
    assert state.failed_step is SHIP
    assert [s.status for s in state.shipments] == [ShipmentStatus.CREATED, ShipmentStatus.REJECTED]
    assert state.shipments_for(UNSHIP) == state.shipments[:1]

    for _ in range(3):
        run.succeed()
    assert run.state.status is SagaStatus.FAILED
    assert history_steps(run.state)[-3:] == [UNSHIP, RELEASE, CANCEL]
    assert [s.status for s in run.state.shipments] == [ShipmentStatus.CANCELLED, ShipmentStatus.REJECTED]


def test_a_shipment_rejected_by_every_warehouse_needs_no_cancellation() -> None:
    run = run_to(SHIP)

    run.answer(Rejected("address unknown"))

    assert run.state.compensations == (RELEASE, CANCEL)
    assert {s.status for s in run.state.shipments} == {ShipmentStatus.REJECTED}


def test_a_retried_shipment_step_sends_only_the_shipments_not_answered_yet() -> None:
    run = run_to(SHIP)
    run.answer_each({W1_SHIPMENT: Succeeded(), W2_SHIPMENT: Unavailable("W2 down")})
    run.wait_for_retry()

    assert [s.shipment_id for s in run.state.shipments_for(SHIP)] == [W2_SHIPMENT]
    events = run.answer_each({W2_SHIPMENT: Succeeded()})

    assert events == (StepSucceeded(SHIP, run.now),)
    assert run.state.status is SagaStatus.COMPLETED
    assert run.state.shipment_id == W1_SHIPMENT
    assert [s.created_at for s in run.state.shipments] == [run.now - seconds(2), run.now]


def test_an_unavailable_shipment_service_is_retried() -> None:
    run = run_to(SHIP)

    events = run.answer(Unavailable("carrier down"))

    now = run.now
    assert events == (StepFailed(SHIP, 1, "carrier down", True, now + seconds(1), now),)
    assert run.state.status is SagaStatus.SHIPMENT_CREATING
    assert run.state.next_wakeup == now + seconds(1)
    assert run.action() == Wait(now + seconds(1))
    assert run.wait_for_retry() == Call(SHIP, 2, now + seconds(1) + seconds(5))


def test_a_shipment_still_unavailable_after_max_attempts_parks_the_saga_keeping_those_created() -> None:
    run = run_to(SHIP)
    run.fail_transiently(2, "carrier down")

    events = run.answer_each({W1_SHIPMENT: Succeeded(), W2_SHIPMENT: Unavailable("carrier down")})

    reason = "CREATE_SHIPMENT failed after 3 attempts: carrier down"
    now = run.now
    assert events == (
        ShipmentCreated(W1_SHIPMENT, now),
        StepFailed(SHIP, 3, "carrier down", True, None, now),
        SagaParked(reason, now),
    )
    assert run.state.status is SagaStatus.NEEDS_ATTENTION
    assert run.state.attention_reason == reason
    assert record_of(run.state, SHIP).status is StepStatus.FAILED
    assert record_of(run.state, SHIP).attempts == 3
    assert run.state.next_wakeup is None
    assert run.action() == Finished()
    assert [s.status for s in run.state.shipments] == [ShipmentStatus.CREATED, ShipmentStatus.REQUESTED]

    # An operator's abort cancels the shipment created first; the one never created is withdrawn.
    aborted = evolve(run.state, SagaAborted("the carrier is gone", now))
    assert aborted.compensations == (UNSHIP, RELEASE, CANCEL)
    assert [s.status for s in aborted.shipments] == [ShipmentStatus.CREATED, ShipmentStatus.CANCELLED]


def test_a_shipment_timeout_is_retried_because_creating_a_shipment_is_idempotent() -> None:
    run = run_to(SHIP)
    began = run.now

    events = run.time_out()

    deadline = began + seconds(5)
    reason = "CREATE_SHIPMENT timed out after 5s"
    assert events == (StepTimedOut(SHIP, 1, reason, deadline + seconds(1), deadline),)
    state = run.state
    assert state.status is SagaStatus.SHIPMENT_CREATING
    assert state.failure_reason is None
    assert state.retry_at == state.next_wakeup == deadline + seconds(1)
    assert state.deadline is None
    assert last_record(state) == StepRecord(SHIP, StepStatus.RETRYING, 1, began, None, reason)
    assert run.action() == Wait(deadline + seconds(1))
    assert run.wait_for_retry() == Call(SHIP, 2, deadline + seconds(1) + seconds(5))


def test_a_shipment_timing_out_on_every_attempt_parks_the_saga() -> None:
    run = run_to(SHIP)
    retry_ats = []
    for _ in range(2):
        run.time_out()
        retry_ats.append(run.state.retry_at)
        run.wait_for_retry()

    events = run.time_out()

    reason = "CREATE_SHIPMENT timed out after 5s, 3 attempts"
    assert events == (
        StepTimedOut(SHIP, 3, "CREATE_SHIPMENT timed out after 5s", None, run.now),
        SagaParked(reason, run.now),
    )
    assert run.state.status is SagaStatus.NEEDS_ATTENTION
    assert run.state.attention_reason == reason
    assert record_of(run.state, SHIP).status is StepStatus.TIMED_OUT
    assert record_of(run.state, SHIP).attempts == 3
    assert not any(s in COMPENSATIONS for s in history_steps(run.state))
    assert run.action() == Finished()


def test_a_shipment_succeeding_after_retries_completes_the_saga() -> None:
    run = run_to(SHIP)
    run.time_out()
    run.wait_for_retry()
    run.fail_transiently(1)

    run.answer(Succeeded())

    assert run.state.status is SagaStatus.COMPLETED
    assert run.state.shipment_id == W1_SHIPMENT
    assert record_of(run.state, SHIP).status is StepStatus.SUCCEEDED
    assert record_of(run.state, SHIP).attempts == 3
    assert run.state.next_wakeup is None


# --- compensations: RELEASE_STOCK and CANCEL_ORDER ----------------------------------------------------


def test_released_stock_moves_on_to_cancelling_the_order() -> None:
    run = run_to(RELEASE)
    began = run.now

    events = run.answer(Succeeded())

    assert events == (StepSucceeded(RELEASE, run.now),)
    state = run.state
    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == (CANCEL,)
    assert state.failure_reason == "customer blocked"
    assert last_record(state) == StepRecord(RELEASE, StepStatus.SUCCEEDED, 1, began, run.now)
    assert state.next_wakeup is None
    assert run.action() == Emit((StepStarted(CANCEL, 1, run.now + seconds(5), run.now),))


@pytest.mark.parametrize("route", ["after a shortage", "after releasing stock"])
def test_a_cancelled_order_ends_the_compensation_as_failed_with_the_original_reason(route: str) -> None:
    run = run_to(CANCEL) if route == "after a shortage" else run_to_cancel_after_release()
    reason = run.state.failure_reason
    began = run.now

    events = run.answer(Succeeded())

    assert events == (StepSucceeded(CANCEL, run.now),)
    state = run.state
    assert state.status is SagaStatus.FAILED
    assert state.is_terminal
    assert (
        state.failure_reason
        == reason
        == ("out of SKU-1" if route == "after a shortage" else "customer blocked")
    )
    assert state.order_cancelled
    assert state.compensations == ()
    assert state.next_wakeup is None
    assert last_record(state) == StepRecord(CANCEL, StepStatus.SUCCEEDED, 1, began, run.now)
    assert run.action() == Finished()


def in_flight(step: Step) -> Run:
    return run_to(step) if step is RELEASE else run_to_cancel_after_release()


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_a_rejected_compensation_parks_the_saga(step: Step) -> None:
    run = in_flight(step)
    remaining = run.state.compensations

    events = run.answer(Rejected("no such reservation"))

    now = run.now
    assert events == (
        StepFailed(step, 1, "no such reservation", False, None, now),
        SagaParked("no such reservation", now),
    )
    state = run.state
    assert state.status is SagaStatus.NEEDS_ATTENTION
    assert state.attention_reason == "no such reservation"
    assert state.compensations == remaining  # nothing after it was attempted
    assert last_record(state).status is StepStatus.FAILED
    assert last_record(state).attempts == 1
    assert state.next_wakeup is None
    assert not state.order_cancelled
    assert run.action() == Finished()


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_an_unavailable_participant_during_a_compensation_is_retried(step: Step) -> None:
    run = in_flight(step)

    events = run.answer(Unavailable("participant down"))

    now = run.now
    assert events == (StepFailed(step, 1, "participant down", True, now + seconds(1), now),)
    assert run.state.status is SagaStatus.COMPENSATING
    assert run.state.next_wakeup == now + seconds(1)
    assert last_record(run.state).status is StepStatus.RETRYING
    assert run.action() == Wait(now + seconds(1))
    assert run.wait_for_retry() == Call(step, 2, now + seconds(1) + seconds(5))
    assert last_record(run.state).attempts == 2


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_a_compensation_still_unavailable_after_max_attempts_parks_the_saga(step: Step) -> None:
    run = in_flight(step)
    run.fail_transiently(2, "participant down")

    events = run.answer(Unavailable("participant down"))

    reason = f"{step.value} failed after 3 attempts: participant down"
    assert events == (
        StepFailed(step, 3, "participant down", True, None, run.now),
        SagaParked(reason, run.now),
    )
    assert run.state.status is SagaStatus.NEEDS_ATTENTION
    assert run.state.attention_reason == reason
    assert last_record(run.state).status is StepStatus.FAILED
    assert last_record(run.state).attempts == 3
    assert not run.state.order_cancelled
    assert run.action() == Finished()


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_a_compensation_timeout_is_retried(step: Step) -> None:
    run = in_flight(step)
    began = run.now

    events = run.time_out()

    deadline = began + seconds(5)
    reason = f"{step.value} timed out after 5s"
    assert events == (StepTimedOut(step, 1, reason, deadline + seconds(1), deadline),)
    assert run.state.status is SagaStatus.COMPENSATING
    assert run.state.retry_at == run.state.next_wakeup == deadline + seconds(1)
    assert last_record(run.state) == StepRecord(step, StepStatus.RETRYING, 1, began, None, reason)
    assert run.wait_for_retry() == Call(step, 2, deadline + seconds(1) + seconds(5))


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_a_compensation_timing_out_on_every_attempt_parks_the_saga(step: Step) -> None:
    run = in_flight(step)
    for _ in range(2):
        run.time_out()
        run.wait_for_retry()

    events = run.time_out()

    timed_out = f"{step.value} timed out after 5s"
    assert events == (
        StepTimedOut(step, 3, timed_out, None, run.now),
        SagaParked(f"{timed_out}, 3 attempts", run.now),
    )
    assert run.state.status is SagaStatus.NEEDS_ATTENTION
    assert last_record(run.state).status is StepStatus.TIMED_OUT
    assert last_record(run.state).attempts == 3
    assert run.action() == Finished()


@pytest.mark.parametrize("step", COMPENSATIONS)
def test_a_compensation_succeeding_after_retries_carries_on(step: Step) -> None:
    run = in_flight(step)
    run.time_out()
    run.wait_for_retry()
    run.fail_transiently(1)

    run.answer(Succeeded())

    assert last_record(run.state).status is StepStatus.SUCCEEDED
    assert last_record(run.state).attempts == 3
    expected = SagaStatus.COMPENSATING if step is RELEASE else SagaStatus.FAILED
    assert run.state.status is expected


def test_compensation_timeouts_follow_the_policy() -> None:
    policy = SagaPolicy(compensation_timeout=seconds(2))
    run = run_to(RELEASE, policy)

    assert run.action() == Call(RELEASE, 1, run.now + seconds(2))
    events = run.time_out()
    assert isinstance(events[0], StepTimedOut)
    assert events[0].reason == "RELEASE_STOCK timed out after 2s"


# --- the compensation plan ----------------------------------------------------------------------------


def compensating_after(*done: Step) -> SagaState:
    """The state once compensation starts with `done` forward steps behind it (built from events)."""
    journal: list[SagaEvent] = [SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, T0)]
    for step in done:
        journal += [StepStarted(step, 1, T0 + seconds(5), T0), StepSucceeded(step, T0)]
    journal.append(CompensationStarted("why", T0))
    return fold(SAGA_ID, journal)


@pytest.mark.parametrize(
    ("done", "plan"),
    [
        ((), (CANCEL,)),
        ((RESERVE,), (RELEASE, CANCEL)),
        ((RESERVE, CONFIRM), (RELEASE, CANCEL)),
    ],
    ids=["order created", "stock reserved", "order confirmed"],
)
def test_compensations_undo_the_steps_done_in_reverse_order(
    done: tuple[Step, ...], plan: tuple[Step, ...]
) -> None:
    state = compensating_after(*done)

    assert state.status is SagaStatus.COMPENSATING
    assert state.compensations == plan
    assert state.failure_reason == "why"
    assert next_action(state, T0, POLICY) == Emit((StepStarted(plan[0], 1, T0 + seconds(5), T0),))


# --- finished sagas, and messages that make no sense ------------------------------------------------


def completed() -> Run:
    run = Run()
    for _ in range(3):
        run.succeed()
    return run


def failed() -> Run:
    run = run_to(CANCEL)
    run.succeed()
    return run


def parked() -> Run:
    run = run_to(SHIP, SagaPolicy(max_attempts=1))
    run.time_out()
    return run


@pytest.mark.parametrize("make", [completed, failed, parked], ids=["COMPLETED", "FAILED", "NEEDS_ATTENTION"])
def test_a_finished_saga_has_nothing_left_to_do(make: Callable[[], Run]) -> None:
    run = make()

    for when in (run.now, run.now + seconds(3600), T0):
        assert next_action(run.state, when, POLICY) == Finished()
    assert run.state.next_wakeup is None
    assert run.state.step is None


@pytest.mark.parametrize("make", [completed, failed, parked], ids=["COMPLETED", "FAILED", "NEEDS_ATTENTION"])
def test_outcomes_and_timeouts_are_refused_for_a_finished_saga(make: Callable[[], Run]) -> None:
    state = make().state

    with pytest.raises(ValueError, match="no attempt in flight"):
        on_outcome(state, Succeeded(), T0, POLICY)
    with pytest.raises(ValueError, match="no attempt in flight"):
        on_timeout(state, T0, POLICY)


def test_outcomes_and_timeouts_are_refused_before_any_step_started() -> None:
    state = Run().state

    with pytest.raises(ValueError, match="no attempt in flight"):
        on_outcome(state, Rejected("nope"), T0, POLICY)
    with pytest.raises(ValueError, match="no attempt in flight"):
        on_timeout(state, T0, POLICY)


def test_outcomes_and_timeouts_are_refused_while_waiting_for_a_retry() -> None:
    run = run_to(CONFIRM)
    run.answer(Unavailable("orders down"))

    with pytest.raises(ValueError, match="no attempt in flight"):
        on_outcome(run.state, Succeeded(), run.now, POLICY)
    with pytest.raises(ValueError, match="no attempt in flight"):
        on_timeout(run.state, run.now + seconds(60), POLICY)


def test_outcomes_are_refused_between_steps() -> None:
    run = run_to(RESERVE)
    run.answer(Succeeded(picks=PICKS))  # recorded, the next step not yet started

    with pytest.raises(ValueError, match="no attempt in flight"):
        on_outcome(run.state, Succeeded(), run.now, POLICY)


# --- the journal --------------------------------------------------------------------------------------


def test_fold_replays_a_journal_into_the_same_state() -> None:
    run = run_to(CONFIRM)
    run.fail_transiently(1)
    run.time_out()
    run.succeed()
    run.fail_transiently(1)
    run.succeed()

    assert run.state.status is SagaStatus.FAILED
    assert fold(SAGA_ID, run.journal) == run.state
    assert run.state.version == len(run.journal)
    assert run.state.updated_at == run.journal[-1].at
    for length, state in enumerate(run.states, start=1):
        assert fold(SAGA_ID, run.journal[:length]) == state


@pytest.mark.parametrize(
    "journal",
    [
        [StepStarted(RESERVE, 1, T0 + seconds(10), T0)],
        [CompensationStarted("why", T0), SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, T0)],
    ],
    ids=["a step first", "started second"],
)
def test_fold_rejects_a_journal_not_starting_with_saga_started(journal: list[SagaEvent]) -> None:
    with pytest.raises(ValueError, match="does not begin with SagaStarted"):
        fold(SAGA_ID, journal)


def test_evolve_rejects_a_second_saga_started() -> None:
    run = run_to(CONFIRM)

    with pytest.raises(ValueError, match="starts only once"):
        evolve(run.state, SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, run.now))
    with pytest.raises(ValueError, match="starts only once"):
        fold(SAGA_ID, [*run.journal, SagaStarted(ORDER_ID, CUSTOMER_ID, LINES, run.now)])


def test_every_event_bumps_the_version_and_the_update_time() -> None:
    run = Run()
    state = run.state
    event = StepStarted(RESERVE, 1, T0 + seconds(20), T0 + seconds(10))

    after = evolve(state, event)

    assert after.version == state.version + 1
    assert after.updated_at == T0 + seconds(10)
    assert after.started_at == T0
    assert state.version == 1 and state.updated_at == T0  # the input state is left alone


# --- properties of whole runs -------------------------------------------------------------------------

MOVES = ("ok", "reject", "unavailable", "timeout", "split")
POLICIES = st.one_of(
    st.just(POLICY),
    st.builds(
        SagaPolicy,
        max_attempts=st.integers(1, 4),
        retry_backoff=st.integers(0, 3).map(seconds),
    ),
)
TERMINAL_OR_PARKED = {SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.NEEDS_ATTENTION}


def drive(moves: Sequence[str], delays: Sequence[int], policy: SagaPolicy) -> Run:
    """Drive a saga like the orchestrator: each call gets the next move (success once they run out);
    a timeout jumps the clock to the deadline, a wait to its end."""
    run = Run(policy)
    script = iter(moves)
    pauses = iter(delays)
    # Each of at most six steps (three forward, then three compensations) makes at most max_attempts
    # calls, each followed by at most one wait.
    for _ in range(2 * 6 * policy.max_attempts + 1):
        match run.settle():
            case Finished():
                return run
            case Wait(until):
                assert until > run.now
                assert run.state.next_wakeup == until
                run.now = until
            case Call() as call:
                assert run.state.next_wakeup == call.deadline
                run.calls.append(call)
                move = next(script, "ok")
                if move == "timeout":
                    run.now = call.deadline
                    events = on_timeout(run.state, run.now, policy)
                else:
                    run.now += seconds(next(pauses, 0))
                    assert run.now < call.deadline
                    events = answer(run.state, call.step, move, run.now, policy)
                run.record(events)
    raise AssertionError(f"the saga did not finish: {run.state}")


def answer(
    state: SagaState, step: Step, move: str, now: datetime, policy: SagaPolicy
) -> tuple[SagaEvent, ...]:
    """The events of `move` for the step in flight. A shipment step gets an answer per shipment: the
    same for each, or for "split" the first one succeeding and the others rejected (any other step
    is rejected)."""
    outcomes: dict[str, Outcome] = {
        "ok": success_for(step),
        "reject": Rejected(f"{step.value} rejected"),
        "unavailable": Unavailable(f"{step.value} unavailable"),
    }
    if step not in (SHIP, UNSHIP):
        return on_outcome(state, outcomes["reject" if move == "split" else move], now, policy)
    ids = [s.shipment_id for s in state.shipments_for(step)]
    moves = ["ok", *["reject"] * (len(ids) - 1)] if move == "split" else [move] * len(ids)
    return on_shipment_outcomes(state, {i: outcomes[m] for i, m in zip(ids, moves, strict=True)}, now, policy)


def forward_steps_done(state: SagaState) -> list[Step]:
    return [r.step for r in state.history if r.step in FORWARD_STEPS and r.status is StepStatus.SUCCEEDED]


def compensations_run(state: SagaState) -> list[StepRecord]:
    return [r for r in state.history if r.step in COMPENSATION_OF.values()]


def succeeded(state: SagaState, step: Step) -> bool:
    return any(r.step is step and r.status is StepStatus.SUCCEEDED for r in state.history)


run_strategy = st.tuples(
    st.lists(st.sampled_from(MOVES), max_size=30),
    st.lists(st.integers(0, 4), max_size=30),
    POLICIES,
)


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_every_saga_finishes_completed_failed_or_parked_within_bounded_calls(
    case: tuple[list[str], list[int], SagaPolicy],
) -> None:
    moves, delays, policy = case
    run = drive(moves, delays, policy)

    assert run.state.status in TERMINAL_OR_PARKED
    assert len(run.calls) <= 6 * policy.max_attempts
    assert run.state.step is None
    assert run.state.next_wakeup is None


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_the_state_is_always_the_fold_of_the_journal(case: tuple[list[str], list[int], SagaPolicy]) -> None:
    moves, delays, policy = case
    run = drive(moves, delays, policy)

    assert fold(SAGA_ID, run.journal) == run.state
    assert run.state.version == len(run.journal)
    for length, state in enumerate(run.states, start=1):
        assert state.version == length
        assert fold(SAGA_ID, run.journal[:length]) == state


@settings(max_examples=300, deadline=None)
@given(run_strategy, st.data())
def test_a_change_folds_each_event_once_into_the_state_and_the_status_after_it(
    case: tuple[list[str], list[int], SagaPolicy], data: st.DataObject
) -> None:
    moves, delays, policy = case
    run = drive(moves, delays, policy)
    whole = replay(SAGA_ID, run.journal)
    assert whole.after == run.state
    assert whole.statuses == tuple(state.status for state in run.states)
    # The same journal recorded over two transactions: the second change starts where the first ended.
    cut = data.draw(st.integers(1, len(run.journal)))
    second = SagaChange.from_state(fold(SAGA_ID, run.journal[:cut])).apply(run.journal[cut:])
    assert second.after == run.state
    assert second.first_sequence == cut + 1
    assert second.statuses == whole.statuses[cut:]


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_compensations_undo_exactly_the_compensable_steps_done_in_reverse(
    case: tuple[list[str], list[int], SagaPolicy],
) -> None:
    moves, delays, policy = case
    run = drive(moves, delays, policy)
    state = run.state
    created = {e.shipment_id for e in run.journal if isinstance(e, ShipmentCreated)}

    # The shipments created are undone first, also when their step then gave up.
    plan = [COMPENSATION_OF[s] for s in reversed(forward_steps_done(state)) if s in COMPENSATION_OF]
    if created and UNSHIP not in plan:
        plan.insert(0, UNSHIP)
    ran = compensations_run(state)
    steps_ran = [r.step for r in ran]
    if state.status is SagaStatus.FAILED:
        assert steps_ran == plan
        assert all(r.status is StepStatus.SUCCEEDED for r in ran)
    elif state.status is SagaStatus.NEEDS_ATTENTION and ran:
        # Parked on a compensation: the ones before it succeeded, the last one gave up.
        assert steps_ran == plan[: len(ran)]
        assert all(r.status is StepStatus.SUCCEEDED for r in ran[:-1])
        assert ran[-1].status in (StepStatus.FAILED, StepStatus.TIMED_OUT)
    else:
        assert ran == []
    if ran:
        # Compensation only ever follows a forward step that gave up.
        gave_up = [r for r in state.history if r.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)]
        assert gave_up[0].step in (RESERVE, CONFIRM, SHIP)
    if state.status is SagaStatus.FAILED:
        # Exactly the shipments created were cancelled.
        assert {s.shipment_id for s in state.shipments if s.status is ShipmentStatus.CANCELLED} >= created
        assert all(s.status is not ShipmentStatus.CREATED for s in state.shipments)


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_a_failed_saga_cancelled_its_order_and_released_stock_iff_it_was_reserved(
    case: tuple[list[str], list[int], SagaPolicy],
) -> None:
    moves, delays, policy = case
    run = drive(moves, delays, policy)
    state = run.state

    if state.status is SagaStatus.FAILED:
        assert state.order_cancelled
        assert state.failure_reason
        assert succeeded(state, RELEASE) == succeeded(state, RESERVE)
        assert history_steps(state)[-1] is CANCEL
        assert not succeeded(state, SHIP)
    if state.status is SagaStatus.NEEDS_ATTENTION:
        assert state.attention_reason
        assert isinstance(run.journal[-1], SagaParked)


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_a_completed_saga_ran_every_forward_step_in_order_and_no_compensation(
    case: tuple[list[str], list[int], SagaPolicy],
) -> None:
    moves, delays, policy = case
    state = drive(moves, delays, policy).state

    if state.status is SagaStatus.COMPLETED:
        assert state.done == FORWARD_STEPS
        assert history_steps(state) == list(FORWARD_STEPS)
        assert all(r.status is StepStatus.SUCCEEDED for r in state.history)
        assert compensations_run(state) == []
        assert state.failure_reason is None
        assert (state.picks, state.shipment_id) == (PICKS, W1_SHIPMENT)
        assert {s.status for s in state.shipments} == {ShipmentStatus.CREATED}


@settings(max_examples=300, deadline=None)
@given(run_strategy)
def test_the_journal_follows_the_retry_rules(case: tuple[list[str], list[int], SagaPolicy]) -> None:
    moves, delays, policy = case
    journal = drive(moves, delays, policy).journal

    attempts: dict[Step, int] = {}
    given_up: set[Step] = set()
    for event in journal:
        match event:
            case StepStarted(step, attempt, deadline, at):
                # Attempts count up from one, never past the policy, never after giving up.
                assert step not in given_up
                assert attempt == attempts.get(step, 0) + 1 <= policy.max_attempts
                assert deadline == at + policy.timeout(step)
                attempts[step] = attempt
            case StepFailed(step, attempt, _, transient, retry_at, at):
                if not transient:
                    assert retry_at is None  # business failures are never retried
                if retry_at is None:
                    given_up.add(step)
                else:
                    assert attempt < policy.max_attempts
                    assert retry_at == at + policy.retry_backoff * attempt
            case StepTimedOut(step, attempt, _, retry_at, at):
                if step in (RESERVE, CONFIRM):
                    assert retry_at is None  # a forward step that timed out is compensated
                if retry_at is None:
                    given_up.add(step)
                else:
                    assert attempt < policy.max_attempts
                    assert retry_at == at + policy.retry_backoff * attempt
            case _:
                pass
