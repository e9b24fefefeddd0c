"""Saga metrics and failure analysis over a window of saga start times, computed exactly in SQL from
the read tables (saga_view, saga_step_view, saga_timeline), so the work stays in the database and
only a few rows per step come back, however many sagas the window holds.

Percentiles are nearest-rank: the p95 is the smallest duration that at least 95% of durations do
not exceed, an actual observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, null, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.saga import TURNING_BACK, FailureKind, SagaStatus, Step, StepStatus
from persistence.tables import saga_step_view, saga_timeline, saga_view

# Failure groups returned at most, the most frequent first.
MAX_FAILURE_GROUPS = 100

_OF_SAGA = saga_view.c.id == saga_step_view.c.saga_id


@dataclass(frozen=True, slots=True)
class Durations:
    average_ms: float | None = None
    p95_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StepFigures:
    step: Step
    attempts: int
    succeeded: int
    failed: int
    timed_out: int
    durations: Durations


@dataclass(frozen=True, slots=True)
class SagaFigures:
    started: int
    completed: int
    failed: int
    needs_attention: int
    compensations: int
    timeouts: int
    durations: Durations
    steps: list[StepFigures]


@dataclass(frozen=True, slots=True)
class FailureGroup:
    step: Step | None
    kind: FailureKind | None
    example_reason: str | None  # one of the group's reasons, whose texts differ (quantities, ids)
    count: int
    last_seen_at: datetime


class SagaAnalytics:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def figures(self, since: datetime | None, until: datetime | None) -> SagaFigures:
        window = _window(since, until)
        async with self._engine.connect() as conn:
            by_status = select(saga_view.c.status, func.count()).where(*window).group_by(saga_view.c.status)
            statuses: dict[str, int] = {status: n for status, n in await conn.execute(by_status)}
            saga_durations = await _durations(conn, saga_view.c.duration_ms, None, window)
            step_durations = await _durations(
                conn, saga_step_view.c.duration_ms, saga_step_view.c.step, window
            )
            attempts = await _count_attempts(conn, window)
            events = await _count_events(conn, window)
        return SagaFigures(
            started=sum(statuses.values()),
            completed=statuses.get(SagaStatus.COMPLETED.value, 0),
            failed=statuses.get(SagaStatus.FAILED.value, 0),
            needs_attention=statuses.get(SagaStatus.NEEDS_ATTENTION.value, 0),
            compensations=sum(events.get((None, kind.__name__), 0) for kind in TURNING_BACK),
            timeouts=sum(n for (_, kind), n in events.items() if kind == "StepTimedOut"),
            durations=saga_durations.get(None, Durations()),
            steps=[
                StepFigures(
                    step,
                    attempts=attempts.get(step.value, (0, 0))[0],
                    succeeded=attempts.get(step.value, (0, 0))[1],
                    failed=events.get((step.value, "StepFailed"), 0),
                    timed_out=events.get((step.value, "StepTimedOut"), 0),
                    durations=step_durations.get(step.value, Durations()),
                )
                for step in Step
            ],
        )

    async def failures(self, since: datetime | None, until: datetime | None) -> list[FailureGroup]:
        """FAILED and NEEDS_ATTENTION sagas grouped by the step that failed and the kind of failure,
        each group with an example of its reasons."""
        seen = func.max(saga_view.c.updated_at)
        view = saga_view.c
        query = (
            select(view.failed_step, view.failure_kind, func.max(view.failure_reason), func.count(), seen)
            .where(
                view.status.in_([SagaStatus.FAILED.value, SagaStatus.NEEDS_ATTENTION.value]),
                *_window(since, until),
            )
            .group_by(view.failed_step, view.failure_kind)
            .order_by(func.count().desc(), seen.desc(), view.failed_step, view.failure_kind)
            .limit(MAX_FAILURE_GROUPS)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            FailureGroup(Step(step) if step else None, FailureKind(kind) if kind else None, reason, n, last)
            for step, kind, reason, n, last in rows
        ]


def _window(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    window = []
    if since is not None:
        window.append(saga_view.c.started_at >= since)
    if until is not None:
        window.append(saga_view.c.started_at < until)
    return window


async def _count_attempts(
    conn: AsyncConnection, window: Sequence[ColumnElement[bool]]
) -> dict[str, tuple[int, int]]:
    """Per step: the attempts started, and how many steps succeeded (a success ends a step)."""
    succeeded = func.count(case((saga_step_view.c.status == StepStatus.SUCCEEDED.value, 1)))
    rows = await conn.execute(
        select(saga_step_view.c.step, func.sum(saga_step_view.c.attempts), succeeded)
        .join(saga_view, _OF_SAGA)
        .where(*window)
        .group_by(saga_step_view.c.step)
    )
    return {step: (int(attempts), int(done)) for step, attempts, done in rows}


async def _count_events(
    conn: AsyncConnection, window: Sequence[ColumnElement[bool]]
) -> dict[tuple[str | None, str], int]:
    """Per step and kind: failed and timed-out attempts, and turnings back begun (no step)."""
    kinds = ["StepFailed", "StepTimedOut", *(kind.__name__ for kind in TURNING_BACK)]
    rows = await conn.execute(
        select(saga_timeline.c.step, saga_timeline.c.type, func.count())
        .join(saga_view, saga_view.c.id == saga_timeline.c.saga_id)
        .where(saga_timeline.c.type.in_(kinds), *window)
        .group_by(saga_timeline.c.step, saga_timeline.c.type)
    )
    return {(step, kind): count for step, kind, count in rows}


async def _durations(
    conn: AsyncConnection,
    duration: ColumnElement[int],
    group: ColumnElement[str] | None,
    window: Sequence[ColumnElement[bool]],
) -> dict[str | None, Durations]:
    """Average and nearest-rank p95 of `duration`, per `group` (or overall under None), in one query."""
    source = saga_view if group is None else saga_step_view.join(saga_view, _OF_SAGA)
    ranked = (
        select(
            (null() if group is None else group).label("key"),
            duration.label("ms"),
            func.row_number().over(partition_by=group, order_by=duration).label("rank"),
            func.count().over(partition_by=group).label("n"),
            func.avg(duration).over(partition_by=group).label("mean"),
        )
        .select_from(source)
        .where(duration.is_not(None), *window)
        .subquery()
    )
    rows = await conn.execute(
        select(ranked.c.key, ranked.c.ms, ranked.c.mean).where(ranked.c.rank == (ranked.c.n * 95 + 99) // 100)
    )
    return {key: Durations(float(mean), int(ms)) for key, ms, mean in rows}
