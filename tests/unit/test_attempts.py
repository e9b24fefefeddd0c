"""Work run again after a conflict or, under an idempotency key, after a lost commit: once an
outcome was lost, no later failure may be reported as "nothing was done"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from domain.orchestration.attempts import CONFLICT_ATTEMPTS, until_settled
from domain.ports import ConcurrencyConflict, IdempotencyKeyReused, OutcomeUnknown, StillContended


def runs(*outcomes: object) -> Callable[[], Awaitable[object]]:
    """A piece of work whose runs raise (an exception) or return (anything else) `outcomes` in turn."""
    left = list(outcomes)

    async def run() -> object:
        outcome = left.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return run


async def test_a_run_after_a_lost_outcome_that_succeeds_is_the_answer() -> None:
    assert await until_settled(runs(OutcomeUnknown("lost"), "placed"), "place", keyed=True) == "placed"


async def test_a_failure_after_a_lost_outcome_is_an_unknown_outcome() -> None:
    busy = TimeoutError("no connection free")
    with pytest.raises(OutcomeUnknown) as raised:
        await until_settled(runs(OutcomeUnknown("lost"), busy), "place", keyed=True)
    assert raised.value.__cause__ is busy


async def test_conflicts_to_the_end_after_a_lost_outcome_are_an_unknown_outcome_not_still_contended() -> None:
    conflicts = [ConcurrencyConflict("raced")] * (CONFLICT_ATTEMPTS - 1)
    with pytest.raises(OutcomeUnknown):
        await until_settled(runs(OutcomeUnknown("lost"), *conflicts), "place", keyed=True)


async def test_without_a_lost_outcome_failures_are_raised_as_they_are() -> None:
    busy = TimeoutError("no connection free")
    with pytest.raises(TimeoutError):
        await until_settled(runs(ConcurrencyConflict("raced"), busy), "place", keyed=True)
    with pytest.raises(StillContended):
        await until_settled(runs(*[ConcurrencyConflict("raced")] * CONFLICT_ATTEMPTS), "place", keyed=True)
    with pytest.raises(OutcomeUnknown):  # without a key, a lost outcome is not run again
        await until_settled(runs(OutcomeUnknown("lost"), "placed"), "place", keyed=False)


async def test_a_key_found_bound_to_another_request_after_a_lost_outcome_is_said_as_it_is() -> None:
    # The key is bound in the transaction of the effect: bound to another request, the lost run did
    # not commit, and the client is told the key was reused, not that the outcome is unknown.
    with pytest.raises(IdempotencyKeyReused):
        await until_settled(runs(OutcomeUnknown("lost"), IdempotencyKeyReused()), "place", keyed=True)
