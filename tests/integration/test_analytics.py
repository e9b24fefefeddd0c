"""Saga metrics and failure groups, exact on both databases: the sagas are staged on a clock that
moves only when told, so every count and every duration is known in advance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from domain.model.interventions import Actor, Refused
from domain.model.saga import FailureKind, Participant, SagaStatus, Step
from persistence.read.analytics import (
    MAX_ACTIVITY_MINUTES,
    ActivityBucket,
    Durations,
    FailureGroup,
    SagaFigures,
    StepFigures,
)
from persistence.read.paging import PageFilter, Window
from tests.integration.staging import Stage, start_stage
from tests.service.fakes import START


@pytest.fixture
async def stage(database_url: str) -> AsyncIterator[Stage]:
    stage = await start_stage(database_url)
    await stage.stock()
    await stage.outcomes()
    yield stage
    await stage.svc.stop()


def at(seconds: int) -> timedelta:
    return timedelta(seconds=seconds)


# What `Stage.outcomes` runs, a minute apart (plus the time each saga itself waited on the clock):
#   completed          START+0    0 s
#   retried            START+60   reserve refused once, retried after 1 s
#   shortage           START+121  reserve rejected, order cancelled
#   confirm_refused    START+181  confirm refused 3 times (1 s, 2 s pauses), stock released, cancelled
#   reserve_timed_out  START+244  reserve held past its 10 s deadline, cancelled
#   parked             START+314  shipment refused 3 times (1 s, 2 s pauses): needs attention
SHORTAGE = "insufficient stock: SKU-1 short by 43 (requested 50, available 7)"


async def test_metrics_over_every_saga(stage: Stage) -> None:
    figures = await stage.svc.analytics.figures(None, None)
    assert figures == SagaFigures(
        started=6,
        completed=2,
        failed=3,
        needs_attention=1,
        compensations=3,
        timeouts=1,
        # Finished sagas took 0, 1000, 0, 3000 and 10000 ms; the parked one has not finished.
        durations=Durations(2800.0, 10000, 1000),
        steps=[
            StepFigures(Step.CREATE_ORDER, 6, 6, 0, 0, Durations(0.0, 0, 0)),
            StepFigures(Step.RESERVE_STOCK, 7, 4, 2, 1, Durations(11000 / 6, 10000, 0)),
            StepFigures(Step.CONFIRM_ORDER, 6, 3, 3, 0, Durations(750.0, 3000, 0)),
            StepFigures(Step.CREATE_SHIPMENT, 5, 2, 3, 0, Durations(1000.0, 3000, 0)),
            StepFigures(Step.RELEASE_STOCK, 1, 1, 0, 0, Durations(0.0, 0, 0)),
            StepFigures(Step.CANCEL_ORDER, 3, 3, 0, 0, Durations(0.0, 0, 0)),
            StepFigures(Step.CANCEL_SHIPMENT, 0, 0, 0, 0, Durations()),
        ],
    )


async def test_metrics_over_a_window_of_start_times(stage: Stage) -> None:
    window = await stage.svc.analytics.figures(START + at(121), START + at(244))  # shortage, confirm
    assert (window.started, window.completed, window.failed, window.compensations) == (2, 0, 2, 2)
    assert window.durations == Durations(1500.0, 3000, 0)
    confirm = next(s for s in window.steps if s.step is Step.CONFIRM_ORDER)
    assert confirm == StepFigures(Step.CONFIRM_ORDER, 3, 0, 3, 0, Durations(3000.0, 3000, 3000))

    empty = await stage.svc.analytics.figures(START + at(3600), None)
    assert (empty.started, empty.durations) == (0, Durations())
    assert all(s == StepFigures(s.step, 0, 0, 0, 0, Durations()) for s in empty.steps)


async def test_activity_counts_each_minute_in_the_database(stage: Stage) -> None:
    minute = [START + timedelta(minutes=m) for m in range(6)]
    assert await stage.svc.analytics.activity(START, START + at(360)) == [
        ActivityBucket(minute[0], completed=1),
        ActivityBucket(minute[1], completed=1),  # the retried saga, at +61 s
        ActivityBucket(minute[2], failed=1, compensated=1),  # the shortage
        ActivityBucket(minute[3], failed=1, compensated=1),  # confirmation refused
        ActivityBucket(minute[4], failed=1, compensated=1),  # the reservation timed out, at +254 s
        ActivityBucket(minute[5]),  # the parked saga neither finished nor compensated
    ]
    # Buckets are whole minutes; what they count is only what happened inside the window.
    assert await stage.svc.analytics.activity(START + at(30), START + at(245)) == [
        ActivityBucket(minute[0]),
        ActivityBucket(minute[1], completed=1),
        ActivityBucket(minute[2], failed=1, compensated=1),
        ActivityBucket(minute[3], failed=1, compensated=1),
        ActivityBucket(minute[4]),
    ]


async def test_activity_counts_a_completion_once_and_agrees_with_the_metrics(stage: Stage) -> None:
    completed = await stage.svc.pages.saga_page(PageFilter([SagaStatus.COMPLETED.value]), Window(10))
    # Newest first: the retried saga is dispatched (not another completion); the first saga is
    # cancelled after it completed, so it counts where it failed.
    dispatched, cancelled = completed
    order = await stage.svc.read.order(dispatched.order_id)
    assert order is not None and order.shipment_id is not None
    assert not isinstance(
        await stage.svc.orchestrator.dispatch_shipment(dispatched.id, order.shipment_id), Refused
    )
    operator = Actor("operator-1", "operator")
    assert not isinstance(await stage.svc.orchestrator.cancel_order(cancelled.id, operator), Refused)
    await stage.run_until(cancelled.id, "FAILED")

    since, until = START, stage.clock.now() + at(60)
    figures, buckets = (
        await stage.svc.analytics.figures(since, until),
        await stage.svc.analytics.activity(since, until),
    )
    counted = [sum(getattr(b, kind) for b in buckets) for kind in ("completed", "failed", "compensated")]
    assert counted == [figures.completed, figures.failed, figures.compensations] == [1, 4, 4]
    # The first saga completed at START and was cancelled; the retried one completed a minute later.
    assert buckets[:2] == [ActivityBucket(START), ActivityBucket(START + at(60), completed=1)]


@pytest.mark.parametrize("minutes", [0, -1, MAX_ACTIVITY_MINUTES + 1])
async def test_activity_refuses_an_empty_or_overlong_window(stage: Stage, minutes: int) -> None:
    with pytest.raises(ValueError, match="window"):
        await stage.svc.analytics.activity(START, START + timedelta(minutes=minutes))


async def test_failures_are_grouped_by_step_and_kind_with_an_example_reason(stage: Stage) -> None:
    await stage.clock.advance(60)
    stage.gate.holds[Participant.INVENTORY] = 1
    again = await stage.order(1)  # a second reservation timeout
    again_at = (await stage.svc.read.saga(again)).updated_at  # type: ignore[union-attr]
    await stage.clock.advance(60)
    larger = await stage.order(60)  # a second shortage of the same SKU, other quantities in its reason
    larger_at = (await stage.svc.read.saga(larger)).updated_at  # type: ignore[union-attr]
    timed_out = "RESERVE_STOCK timed out after 10s"
    larger_shortage = "insufficient stock: SKU-1 short by 54 (requested 60, available 6)"

    assert await stage.svc.analytics.failures(None, None) == [
        FailureGroup(Step.RESERVE_STOCK, FailureKind.INSUFFICIENT_STOCK, larger_shortage, 2, larger_at),
        FailureGroup(Step.RESERVE_STOCK, FailureKind.TIMED_OUT, timed_out, 2, again_at),
        FailureGroup(
            Step.CREATE_SHIPMENT,
            FailureKind.UNAVAILABLE,
            "CREATE_SHIPMENT failed after 3 attempts: SHIPMENT is down",
            1,
            START + at(317),
        ),
        FailureGroup(
            Step.CONFIRM_ORDER,
            FailureKind.UNAVAILABLE,
            "CONFIRM_ORDER failed after 3 attempts: ORDERS is down",
            1,
            START + at(184),
        ),
    ]
    assert larger_shortage > SHORTAGE  # the example is one of the group's reasons
    assert await stage.svc.analytics.failures(START + at(200), START + at(300)) == [
        FailureGroup(Step.RESERVE_STOCK, FailureKind.TIMED_OUT, timed_out, 1, START + at(254)),
    ]


async def test_an_operator_abort_counts_as_compensating_in_metrics_and_prometheus(stage: Stage) -> None:
    def prometheus_compensated() -> float:
        value = stage.svc.prometheus.registry.get_sample_value("ordersaga_sagas_compensated_total")
        return value or 0.0

    before, counted = (await stage.svc.analytics.figures(None, None)).compensations, prometheus_compensated()
    [parked] = await stage.svc.worklist.sagas_needing_attention(10)

    await stage.svc.orchestrator.abort(parked.id, "no carrier will take it", Actor("operator-1", "operator"))
    await stage.run_until(parked.id, "FAILED")

    assert (await stage.svc.analytics.figures(None, None)).compensations == before + 1
    assert prometheus_compensated() == counted + 1
