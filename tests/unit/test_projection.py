"""The read rows pair a failed step with the reason they show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.model.saga import (
    CompensationStarted,
    SagaAborted,
    SagaChange,
    SagaEvent,
    SagaParked,
    SagaRetried,
    SagaStarted,
    SagaState,
    Step,
    StepFailed,
    StepStarted,
    StepSucceeded,
    evolve,
    start,
)
from domain.model.values import OrderLine
from persistence import codec
from persistence.read.projection import saga_row, timeline_rows

AT = datetime(2026, 1, 1, tzinfo=UTC)
SHORT = "insufficient stock: SKU-1 short by 1 (requested 2, available 1)"


def run(*events: SagaEvent) -> SagaState:
    state = start("saga-1", SagaStarted("order-1", "c-1", (OrderLine("SKU-1", 2),), AT))
    for event in events:
        state = evolve(state, event)
    return state


def begin(step: Step) -> StepStarted:
    return StepStarted(step, 1, AT + timedelta(seconds=5), AT)


SHORTAGE = (
    begin(Step.RESERVE_STOCK),
    StepFailed(Step.RESERVE_STOCK, 1, SHORT, False, None, AT),
    CompensationStarted(SHORT, AT),
    begin(Step.CANCEL_ORDER),
)
CANCEL_STUCK = (
    StepFailed(Step.CANCEL_ORDER, 1, "orders down", True, None, AT),
    SagaParked("orders down", AT),
)


def test_a_parked_compensation_shows_the_stuck_step_with_why_it_is_parked() -> None:
    row = saga_row(run(*SHORTAGE, *CANCEL_STUCK))
    assert (row["failed_step"], row["failure_reason"]) == ("CANCEL_ORDER", "orders down")


def test_once_retried_to_failed_the_step_shown_is_the_one_that_turned_the_saga_back() -> None:
    done = (SagaRetried(AT), begin(Step.CANCEL_ORDER), StepSucceeded(Step.CANCEL_ORDER, AT))
    row = saga_row(run(*SHORTAGE, *CANCEL_STUCK, *done))
    assert (row["status"], row["failed_step"], row["failure_reason"]) == ("FAILED", "RESERVE_STOCK", SHORT)


def test_an_aborted_saga_shows_no_failed_step() -> None:
    row = saga_row(run(begin(Step.RESERVE_STOCK), SagaAborted("wrong address", AT)))
    assert (row["failed_step"], row["failure_reason"]) == (None, "wrong address")


def test_the_timeline_names_who_intervened_and_journals_from_before_that_still_fold() -> None:
    before = run(begin(Step.RESERVE_STOCK))
    rows = timeline_rows(
        SagaChange.from_state(before).apply([SagaAborted("wrong address", AT, "operator-1", "operator")])
    )
    assert [(r["type"], r["actor"], r["actor_role"]) for r in rows] == [
        ("SagaAborted", "operator-1", "operator")
    ]
    # An intervention journalled before its actor was kept has none in its JSON.
    old = codec.decode("SagaAborted", 1, {"reason": "wrong address", "at": AT.isoformat()})
    assert old == SagaAborted("wrong address", AT, None)
    assert timeline_rows(SagaChange.from_state(before).apply([old]))[0]["actor"] is None
    assert codec.decode(*codec.encode(SagaRetried(AT, "operator-1"))) == SagaRetried(AT, "operator-1")
