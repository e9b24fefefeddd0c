"""Saga metrics and failure analysis over a window of saga start times, computed exactly in SQL from
the read tables (saga_view, saga_step_view, saga_timeline), so the work stays in the database and
only a few rows per step come back, however many sagas the window holds.

Percentiles are nearest-rank: the p95 is the smallest duration that at least 95% of durations do
not exceed, an actual observation (likewise the p50).

Activity over time is counted per whole UTC minute, bucketed in SQL from `saga_timeline`, and the
window it covers is bounded (`MAX_ACTIVITY_MINUTES`), so the answer is too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, null, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from domain.model.saga import (
    TURNING_BACK,
    FailureKind,
    SagaStatus,
    Step,
    StepFailed,
    StepStatus,
    StepSucceeded,
    StepTimedOut,
)
from persistence.tables import saga_step_view, saga_timeline, saga_view

# Failure groups returned at most, the most frequent first.
MAX_FAILURE_GROUPS = 100
# The longest window `activity` buckets: a day of minutes.
MAX_ACTIVITY_MINUTES = 24 * 60

_OF_SAGA = saga_view.c.id == saga_step_view.c.saga_id


@dataclass(frozen=True, slots=True)
class Durations:
    average_ms: float | None = None
    p95_ms: int | None = None
    p50_ms: int | None = None


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
class ActivityBucket:
    """What happened to sagas in the minute that starts at `start`."""

    start: datetime
    completed: int = 0
    failed: int = 0
    compensated: int = 0


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
            compensations=sum(events.get((None, kind.type_name), 0) for kind in TURNING_BACK),
            timeouts=sum(n for (_, kind), n in events.items() if kind == StepTimedOut.type_name),
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

    async def activity(self, since: datetime, until: datetime) -> list[ActivityBucket]:
        """Sagas that completed, failed, and began compensating (a failed step, an operator's abort, a
        customer's cancel) in each UTC minute from the one holding `since` to the one before `until`,
        counting transitions at or after `since` and before `until`: one bucket per minute, empty ones
        included. A saga counts as completed once, in the minute it completed, and only while it stays
        COMPLETED: a dispatch is not another completion, and a completed saga cancelled later counts
        where it fails instead. So over a window holding whole sagas the counts add up to
        `figures`' completed, failed and compensations. Raises ValueError unless
        0 < until - since <= MAX_ACTIVITY_MINUTES minutes."""
        if not timedelta(0) < until - since <= timedelta(minutes=MAX_ACTIVITY_MINUTES):
            raise ValueError(f"the window must be longer than 0 and at most {MAX_ACTIVITY_MINUTES} minutes")
        timeline, turning_back = saga_timeline.c, [k.type_name for k in TURNING_BACK]
        # The step whose success completes a saga is the one event that moves it into COMPLETED; later
        # events of a completed saga (its dispatch) leave it there.
        completion = (timeline.status == SagaStatus.COMPLETED.value) & (
            timeline.type == StepSucceeded.type_name
        )
        kind = case(
            (timeline.type.in_(turning_back), "compensated"),
            (timeline.status == SagaStatus.COMPLETED.value, "completed"),
            else_="failed",
        )
        minute = _EpochMinute(timeline.occurred_at)
        query = (
            select(minute, kind, func.count())
            .join_from(saga_timeline, saga_view, saga_view.c.id == timeline.saga_id)
            .where(
                timeline.occurred_at >= since,
                timeline.occurred_at < until,
                (completion & (saga_view.c.status == SagaStatus.COMPLETED.value))
                # FAILED is never left: the one transition that reaches it is the saga's last.
                | (timeline.status == SagaStatus.FAILED.value)
                | timeline.type.in_(turning_back),
            )
            .group_by(minute, kind)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        counts: dict[int, dict[str, int]] = {}
        for at_minute, what, count in rows:
            counts.setdefault(int(at_minute), {})[what] = count
        first, last = _epoch_minute(since), _epoch_minute(until - timedelta(microseconds=1))
        return [
            ActivityBucket(datetime.fromtimestamp(m * 60, UTC), **counts.get(m, {}))
            for m in range(first, last + 1)
        ]


class _EpochMinute(FunctionElement[int]):
    """Whole minutes since 1970-01-01 UTC of a timestamp column, computed by the database."""

    type = Integer()
    inherit_cache = True


@compiles(_EpochMinute, "postgresql")
def _epoch_minute_postgresql(element: _EpochMinute, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)}) / 60) AS BIGINT)"


@compiles(_EpochMinute, "sqlite")
def _epoch_minute_sqlite(element: _EpochMinute, compiler: SQLCompiler, **kw: Any) -> str:
    # UtcDateTime stores UTC text there; strftime('%s') reads it as whole seconds since the epoch.
    return f"(CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER) / 60)"


def _epoch_minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


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
    kinds = [StepFailed.type_name, StepTimedOut.type_name, *(kind.type_name for kind in TURNING_BACK)]
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
    """Average and nearest-rank p50 and p95 of `duration`, per `group` (or overall under None), in one
    query."""
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
    p50, p95 = (ranked.c.n * 50 + 99) // 100, (ranked.c.n * 95 + 99) // 100
    rows = await conn.execute(
        select(ranked.c.key, ranked.c.ms, ranked.c.mean, ranked.c.rank == p50, ranked.c.rank == p95).where(
            (ranked.c.rank == p50) | (ranked.c.rank == p95)
        )
    )
    found: dict[str | None, dict[str, Any]] = {}
    for key, ms, mean, is_p50, is_p95 in rows:
        figures = found.setdefault(key, {"average_ms": float(mean)})
        if is_p50:
            figures["p50_ms"] = int(ms)
        if is_p95:
            figures["p95_ms"] = int(ms)
    return {key: Durations(**figures) for key, figures in found.items()}
