"""What the saga does next: `next_action` says what, from its state and the time; `on_outcome`,
`on_shipment_outcomes` and `on_timeout` turn what a participant did (or did not do in time) into events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import assert_never

from domain.model.saga.events import (
    CompensationStarted,
    SagaEvent,
    SagaParked,
    ShipmentAccepted,
    ShipmentCreated,
    ShipmentRejected,
    StepFailed,
    StepStarted,
    StepSucceeded,
    StepTimedOut,
)
from domain.model.saga.outcomes import Accepted, Outcome, Rejected, Succeeded, Unavailable
from domain.model.saga.policy import SagaPolicy
from domain.model.saga.shipments import ShipmentStatus
from domain.model.saga.state import SagaState, SagaStatus
from domain.model.saga.steps import FORWARD_STEPS, PARTICIPANT_OF, Participant, Step

# Steps whose timeout is retried rather than compensated: they are idempotent and come after the
# order was confirmed (the shipment) or are themselves the way back (the compensations).
_RETRY_ON_TIMEOUT = frozenset(
    {Step.CREATE_SHIPMENT, Step.RELEASE_STOCK, Step.CANCEL_ORDER, Step.CANCEL_SHIPMENT}
)


@dataclass(frozen=True, slots=True)
class Emit:
    """Record these events; no participant is involved."""

    events: tuple[SagaEvent, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """Send the in-flight step's command to its participant, if its deadline has not passed."""

    step: Step
    attempt: int
    deadline: datetime

    @property
    def participant(self) -> Participant:
        return PARTICIPANT_OF[self.step]


@dataclass(frozen=True, slots=True)
class Wait:
    until: datetime


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing more happens without an operator (terminal, or parked)."""


Action = Emit | Call | Wait | Finished


def next_action(state: SagaState, now: datetime, policy: SagaPolicy) -> Action:
    if state.is_terminal or state.status is SagaStatus.NEEDS_ATTENTION:
        return Finished()
    if state.step is not None:
        if state.retry_at is not None:
            if now < state.retry_at:
                return Wait(state.retry_at)
            return Emit((_begin(state.step, state.attempt + 1, now, policy),))
        assert state.deadline is not None
        if state.awaiting_warehouse and now < state.deadline:
            return Wait(state.deadline)
        return Call(state.step, state.attempt, state.deadline)
    if state.status is SagaStatus.COMPENSATING:
        return Emit((_begin(state.compensations[0], 1, now, policy),))
    following = FORWARD_STEPS[FORWARD_STEPS.index(state.done[-1]) + 1]
    return Emit((_begin(following, 1, now, policy),))


def _begin(step: Step, attempt: int, now: datetime, policy: SagaPolicy) -> StepStarted:
    return StepStarted(step, attempt, now + policy.timeout(step), now)


def on_outcome(
    state: SagaState, outcome: Outcome, now: datetime, policy: SagaPolicy
) -> tuple[SagaEvent, ...]:
    step = _in_flight(state)
    match outcome:
        case Succeeded(picks):
            return (StepSucceeded(step, now, picks),)
        case Rejected(reason):
            return refusal(state, step, reason, now)
        case Unavailable(reason, retry_after):
            retry_at = _retry_at(state, now, policy, retry_after)
            failed = StepFailed(step, state.attempt, reason, True, retry_at, now)
            exhausted = f"{step.value} failed after {state.attempt} attempts: {reason}"
            return (failed,) if retry_at else (failed, *_give_up(step, exhausted, now))
        case Accepted():
            raise ValueError(f"{step.value} is not answered later")
        case _:
            assert_never(outcome)


def refusal(state: SagaState, step: Step, reason: str, now: datetime) -> tuple[SagaEvent, ...]:
    """`step`'s participant refused (the attempt in flight, or the one waiting to be retried):
    retrying cannot help, so the step gives up."""
    failed = StepFailed(step, state.attempt, reason, False, None, now)
    return (failed, *_give_up(step, reason, now, refused=True))


def on_shipment_outcomes(
    state: SagaState, outcomes: Mapping[str, Outcome], now: datetime, policy: SagaPolicy
) -> tuple[SagaEvent, ...]:
    """What a CREATE_SHIPMENT or CANCEL_SHIPMENT attempt's answers, one per shipment id, lead to. The
    step succeeds once every shipment exists (or is cancelled), and fails as its worst answer does:
    a refusal turns the saga back, a transient failure is retried, sending again only the shipments
    not answered yet."""
    step = _in_flight(state)
    answered: list[SagaEvent] = []
    answers = list(outcomes.values())
    # CREATE_SHIPMENT: shipments requested and not answered here (awaited from an earlier answer)
    # are still to come. A cancel is done once every cancel sent is.
    every = all(isinstance(o, Succeeded) for o in answers) and not (
        step is Step.CREATE_SHIPMENT
        and any(
            s.status is ShipmentStatus.REQUESTED for s in state.shipments if s.shipment_id not in outcomes
        )
    )
    # StepSucceeded(CREATE_SHIPMENT) says every shipment requested exists, so each answer is
    # journalled on its own only when the step does not succeed, or carries a remote warehouse's
    # reference: a retry then skips the shipments created, and a turn back cancels them.
    if step is Step.CREATE_SHIPMENT:
        for shipment_id, outcome in outcomes.items():
            if isinstance(outcome, Succeeded) and (not every or outcome.reference is not None):
                answered.append(ShipmentCreated(shipment_id, now, outcome.reference))
            elif isinstance(outcome, Rejected):
                answered.append(ShipmentRejected(shipment_id, outcome.reason, now))
            elif isinstance(outcome, Accepted):
                answered.append(ShipmentAccepted(shipment_id, now))
    worst = next((o for kind in (Rejected, Unavailable) for o in answers if isinstance(o, kind)), None)
    if worst is not None:
        return (*answered, *on_outcome(state, worst, now, policy))
    if every:
        return (*answered, *on_outcome(state, Succeeded(), now, policy))
    return tuple(answered)  # some are awaited: the step waits for their answers


def on_timeout(state: SagaState, now: datetime, policy: SagaPolicy) -> tuple[SagaEvent, ...]:
    step = _in_flight(state)
    reason = f"{step.value} timed out after {state.attempt_timeout.total_seconds():g}s"
    retry_at = _retry_at(state, now, policy) if step in _RETRY_ON_TIMEOUT else None
    timed_out = StepTimedOut(step, state.attempt, reason, retry_at, now)
    if retry_at:
        return (timed_out,)
    if step in _RETRY_ON_TIMEOUT:
        reason = f"{reason}, {state.attempt} attempts"
    return (timed_out, *_give_up(step, reason, now))


def _in_flight(state: SagaState) -> Step:
    if state.step is None or state.retry_at is not None:
        raise ValueError(f"saga {state.saga_id} has no attempt in flight")
    return state.step


def _retry_at(
    state: SagaState, now: datetime, policy: SagaPolicy, retry_after: timedelta | None = None
) -> datetime | None:
    if state.attempt >= policy.max_attempts:
        return None
    return now + max(policy.backoff(state.attempt), retry_after or timedelta(0))


def _give_up(step: Step, reason: str, now: datetime, refused: bool = False) -> tuple[SagaEvent, ...]:
    # Before the order is confirmed the way out is back (compensate), and so it is once a warehouse
    # refused its shipment. A shipment that kept failing or timing out may be held by its warehouse or
    # not, and when the way back itself is blocked, only an operator may decide (decision 0022): they
    # retry it, or abort, which cancels the shipments created first.
    if step in (Step.RESERVE_STOCK, Step.CONFIRM_ORDER) or (refused and step is Step.CREATE_SHIPMENT):
        return (CompensationStarted(reason, now),)
    return (SagaParked(reason, now),)
