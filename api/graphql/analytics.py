"""Saga metrics and failure analysis over a window of saga start times (`since` inclusive, `until`
exclusive; either may be left open), and saga activity per minute over a bounded window of time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.types import FailureKind, SagaStepName, service
from persistence.read import analytics


@strawberry.type(description="How one step's attempts went in the window's sagas.")
class StepMetrics:
    name: SagaStepName = strawberry.field(description="Which step.")  # type: ignore[valid-type]
    attempts: int = strawberry.field(description="Attempts started.")
    succeeded: int = strawberry.field(description="Attempts that succeeded (each ends its step).")
    failed: int = strawberry.field(description="Attempts that failed, retried or not.")
    timed_out: int = strawberry.field(description="Attempts that passed their deadline.")
    average_duration_ms: float | None = strawberry.field(
        description="From a step's first attempt to its end, retries included, as the journal records "
        "them; null without data. Steps that run in one transaction (chained, when no participant gate "
        "sits between steps) share that transaction's time, so they count 0 ms: the figure measures "
        "waiting (deadlines, retries, slow participants), not the work inside a commit."
    )
    p95_duration_ms: float | None = strawberry.field(description="Nearest-rank 95th percentile.")
    p50_duration_ms: float | None = strawberry.field(description="Nearest-rank median.")

    @classmethod
    def from_figures(cls, figures: analytics.StepFigures) -> StepMetrics:
        return cls(
            name=figures.step,
            attempts=figures.attempts,
            succeeded=figures.succeeded,
            failed=figures.failed,
            timed_out=figures.timed_out,
            average_duration_ms=figures.durations.average_ms,
            p95_duration_ms=figures.durations.p95_ms,
            p50_duration_ms=figures.durations.p50_ms,
        )


@strawberry.type(description="Sagas started in a window, and how they went.")
class SagaMetrics:
    since: datetime | None = strawberry.field(
        description="The window's start (inclusive), as asked; null: open."
    )
    until: datetime | None = strawberry.field(
        description="The window's end (exclusive), as asked; null: open."
    )
    started: int = strawberry.field(description="Sagas started in the window.")
    completed: int = strawberry.field(description="Of those, the ones now COMPLETED.")
    failed: int = strawberry.field(description="Of those, the ones now FAILED.")
    needs_attention: int = strawberry.field(description="Of those, the ones now parked (NEEDS_ATTENTION).")
    completion_rate: float | None = strawberry.field(
        description="completed / (completed + failed): of the sagas that finished, the share that "
        "completed; null when none finished."
    )
    average_duration_ms: float | None = strawberry.field(
        description="From start to COMPLETED or FAILED; null when none finished."
    )
    p95_duration_ms: float | None = strawberry.field(description="Nearest-rank 95th percentile.")
    compensations: int = strawberry.field(description="Sagas that began compensating.")
    timeouts: int = strawberry.field(description="Step attempts that passed their deadline.")
    steps: list[StepMetrics] = strawberry.field(description="Every step, in saga order.")
    p50_duration_ms: float | None = strawberry.field(description="Nearest-rank median.")


@strawberry.type(description="What happened to sagas in one UTC minute.")
class SagaActivity:
    start: datetime = strawberry.field(description="The minute's first instant.")
    completed: int = strawberry.field(description="Sagas that completed.")
    failed: int = strawberry.field(description="Sagas that ended FAILED.")
    compensated: int = strawberry.field(
        description="Sagas that began compensating: a failed step, an operator's abort or a customer's "
        "cancel."
    )


@strawberry.type(
    description="Sagas that failed (or wait for an operator) on the same step (none for an operator's "
    "abort or a customer's cancel), for the same kind of failure."
)
class FailureGroup:
    step: SagaStepName | None = strawberry.field(  # type: ignore[valid-type]
        description="The step that failed; null for an operator's abort or a customer's cancel."
    )
    kind: FailureKind | None = strawberry.field(  # type: ignore[valid-type]
        description="Why, as a stable kind; null only for sagas that failed before kinds were recorded "
        "and have not been through `ordersaga projections rebuild`."
    )
    reason: str | None = strawberry.field(
        description="An example of the group's reasons, whose texts differ (quantities, ids)."
    )
    count: int = strawberry.field(description="Sagas in the group, at least 1.")
    last_seen_at: datetime = strawberry.field(description="When the latest of them last changed.")


# The window of saga start times the figures cover; either end may be left open.
Since = Annotated[
    datetime | None,
    strawberry.argument(description="Only sagas started at or after this time; omitted: all."),
]
Until = Annotated[
    datetime | None, strawberry.argument(description="Only sagas started before this time; omitted: all.")
]


@strawberry.type
class AnalyticsQueries:
    @strawberry.field(description="Counts, rates and durations of the sagas started in the window.")
    async def saga_metrics(self, info: Info, since: Since = None, until: Until = None) -> SagaMetrics:
        figures = await service(info).analytics.figures(since, until)
        finished = figures.completed + figures.failed
        return SagaMetrics(
            since=since,
            until=until,
            started=figures.started,
            completed=figures.completed,
            failed=figures.failed,
            needs_attention=figures.needs_attention,
            completion_rate=figures.completed / finished if finished else None,
            average_duration_ms=figures.durations.average_ms,
            p95_duration_ms=figures.durations.p95_ms,
            compensations=figures.compensations,
            timeouts=figures.timeouts,
            steps=[StepMetrics.from_figures(s) for s in figures.steps],
            p50_duration_ms=figures.durations.p50_ms,
        )

    @strawberry.field(
        description="FAILED and NEEDS_ATTENTION sagas started in the window, grouped by the step that "
        "failed and the kind of failure, with an example reason; the "
        f"{analytics.MAX_FAILURE_GROUPS} largest groups, most frequent first."
    )
    async def saga_failures(self, info: Info, since: Since = None, until: Until = None) -> list[FailureGroup]:
        groups = await service(info).analytics.failures(since, until)
        return [
            FailureGroup(
                step=g.step, kind=g.kind, reason=g.example_reason, count=g.count, last_seen_at=g.last_seen_at
            )
            for g in groups
        ]

    @strawberry.field(
        description="Sagas completed, failed and compensated per UTC minute, from the minute holding "
        "`since` (inclusive) to `until` (exclusive), one entry per minute, empty minutes included. "
        f"The window must be at most {analytics.MAX_ACTIVITY_MINUTES} minutes long (BAD_USER_INPUT "
        "otherwise)."
    )
    async def saga_activity(
        self,
        info: Info,
        since: Annotated[datetime, strawberry.argument(description="The window's start (inclusive).")],
        until: Annotated[
            datetime,
            strawberry.argument(
                description="The window's end (exclusive): after `since`, at most "
                f"{analytics.MAX_ACTIVITY_MINUTES} minutes later."
            ),
        ],
    ) -> list[SagaActivity]:
        try:
            buckets = await service(info).analytics.activity(since, until)
        except ValueError as refused:
            raise client_error(str(refused), ClientErrorCode.BAD_USER_INPUT, argument="until") from None
        return [
            SagaActivity(start=b.start, completed=b.completed, failed=b.failed, compensated=b.compensated)
            for b in buckets
        ]
