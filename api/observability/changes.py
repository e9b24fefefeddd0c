"""What a committed SagaChange means to those who record it (metrics, traces, logs)."""

from __future__ import annotations

from domain.model.saga import SagaChange, StepRecord


def finished_steps(change: SagaChange) -> list[StepRecord]:
    """The steps that ended (succeeded, or failed for good) in this change."""
    earlier = change.before.history if change.before else ()
    return [
        record
        for position, record in enumerate(change.after.history)
        if record.finished_at and (position >= len(earlier) or earlier[position].finished_at is None)
    ]


def settled(change: SagaChange) -> bool:
    """Did the saga just reach the end of its road: a terminal status, or an operator's desk?"""
    after = change.after
    moved = change.before is None or change.before.status is not after.status
    return moved and after.is_settled
