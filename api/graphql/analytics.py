"""Saga metrics and failure analysis over a window of saga start times (`since` inclusive, `until`
exclusive; either may be left open), saga activity per minute over a bounded window of time, and what
the remote warehouses' commands did in the answering process."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.enums import FailureKind, SagaStepName
from api.graphql.types import service
from api.outbound.warehouse import CommandStats
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


@strawberry.enum(
    description='What a remote warehouse\'s answer to a command meant (README, "Connecting a warehouse").'
)
class WarehouseCommandOutcome(enum.Enum):
    CREATED = strawberry.enum_value("CREATED", description="A CreateShipment answered: the shipment exists.")
    CANCELLED = strawberry.enum_value("CANCELLED", description="A CancelShipment answered: it is withdrawn.")
    ACCEPTED = strawberry.enum_value(
        "ACCEPTED",
        description="A CreateShipment accepted for later (HTTP 202): the warehouse reports the outcome "
        "by reportShipmentOutcome.",
    )
    REJECTED = strawberry.enum_value("REJECTED", description="Refused: the saga turns back.")
    UNAVAILABLE = strawberry.enum_value(
        "UNAVAILABLE",
        description="No answer that decides (5xx, 408, 409, 429, a timeout, a connection error): the "
        "command is sent again within its step's attempts.",
    )


@strawberry.type(description="How many of a warehouse's commands of one type ended one way.")
class WarehouseCommandOutcomeCount:
    outcome: WarehouseCommandOutcome = strawberry.field(description="What the answer meant.")
    count: int = strawberry.field(description="Commands sent that were answered so, at least 1.")


@strawberry.type(
    description="One remote warehouse's commands of one type, as sent by the process answering, since "
    "it started: every attempt counts, a retry being the same command sent again."
)
class WarehouseCommandMetrics:
    warehouse_code: str = strawberry.field(description="The warehouse the commands were for.")
    type: str = strawberry.field(
        description="The command's type as the warehouse receives it: CreateShipment or CancelShipment."
    )
    sent: int = strawberry.field(description="Commands sent (attempts), each answered or failed.")
    outcomes: list[WarehouseCommandOutcomeCount] = strawberry.field(
        description="How many ended each way, in the order of WarehouseCommandOutcome; outcomes that "
        "never happened are left out."
    )
    latency_ms_average: float = strawberry.field(
        description="Milliseconds from sending to the answer (or to the timeout or connection error), "
        "over every attempt."
    )
    latency_ms_max: float = strawberry.field(description="The slowest attempt, in milliseconds.")
    last_latency_ms: float = strawberry.field(description="The latest attempt, in milliseconds.")
    last_response: str = strawberry.field(
        description='What the latest attempt got and what it meant, e.g. "HTTP 202: ACCEPTED", '
        '"timeout: UNAVAILABLE" or "ConnectError: UNAVAILABLE".'
    )
    last_at: datetime = strawberry.field(description="When the latest attempt's answer came.")

    @classmethod
    def from_stats(
        cls, warehouse_code: str, command_type: str, stats: CommandStats
    ) -> WarehouseCommandMetrics:
        assert stats.last_at is not None  # recorded with its first command
        return cls(
            warehouse_code=warehouse_code,
            type=command_type,
            sent=stats.sent,
            outcomes=[
                WarehouseCommandOutcomeCount(outcome=o, count=stats.outcomes[o.name])
                for o in WarehouseCommandOutcome
                if o.name in stats.outcomes
            ],
            latency_ms_average=stats.total_seconds * 1000 / stats.sent,
            latency_ms_max=stats.max_seconds * 1000,
            last_latency_ms=stats.last_seconds * 1000,
            last_response=stats.last_response,
            last_at=stats.last_at,
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
        description="From start to COMPLETED or FAILED, as the journal records them; null when none "
        "finished. A saga whose placement made all its steps (the embedded database, SQLite) starts and "
        "ends in that transaction's time, so it counts 0 ms."
    )
    p95_duration_ms: float | None = strawberry.field(description="Nearest-rank 95th percentile.")
    compensations: int = strawberry.field(description="Sagas that began compensating.")
    timeouts: int = strawberry.field(description="Step attempts that passed their deadline.")
    steps: list[StepMetrics] = strawberry.field(description="Every step, in saga order.")
    p50_duration_ms: float | None = strawberry.field(description="Nearest-rank median.")
    warehouse_commands: list[WarehouseCommandMetrics] = strawberry.field(
        description="The commands this process sent to remote warehouse services since it started, "
        "whatever the window (each process of several answers for its own), by warehouse code and "
        "type; empty when every warehouse is the built-in one."
    )


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
            warehouse_commands=[
                WarehouseCommandMetrics.from_stats(code, kind, stats)
                for (code, kind), stats in sorted(service(info).warehouses.stats.items())
            ],
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
