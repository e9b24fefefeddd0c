"""Work run again when another writer got there first, a bounded number of times.

A ConcurrencyConflict means the work's transaction was rolled back because another one wrote first
(the saga moved on, a request with the same idempotency key bound it): run again, the work sees what
the other did and acts on that. Work that finds its own earlier commit by an idempotency key may
also be run again after OutcomeUnknown: the second run replays the first if it committed, and takes
effect if it did not. Each attempt after the first waits a jittered, growing pause, so that writers
racing for one key or one saga do not race again in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from domain.ports import ConcurrencyConflict, IdempotencyKeyReused, OutcomeUnknown, StillContended

R = TypeVar("R")
log = logging.getLogger("ordersaga.saga")

CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF_S = 0.01


def jittered_pause(first_s: float, attempt: int, cap_s: float = float("inf")) -> float:
    """Seconds to wait after the `attempt`-th failure in a row (1, 2, ...): half to all of a step
    that starts at `first_s` and doubles up to `cap_s`, so that those who failed together do not
    try again in step. Every infrastructure retry of the service paces itself with this."""
    return random.uniform(0.5, 1) * min(first_s * 2.0 ** (attempt - 1), cap_s)


async def until_settled(run: Callable[[], Awaitable[R]], what: str, *, keyed: bool) -> R:
    """`run()`'s result, running it again after a ConcurrencyConflict and, when `keyed` (the work
    finds its own earlier commit by an idempotency key), after OutcomeUnknown, up to
    CONFLICT_ATTEMPTS runs in all. Raises StillContended when every run met a conflict (logged at
    WARNING, naming `what`), and OutcomeUnknown when the last run's outcome was lost. Once a run's
    outcome was lost, whatever a later run raises (but IdempotencyKeyReused, which says the key went to
    another request, so the lost run did not commit) is raised as OutcomeUnknown (from it), logged with
    its traceback: that run failing says nothing of whether the lost one committed, so "nothing was
    done" would be untrue."""
    attempt = 1
    lost: OutcomeUnknown | None = None
    while True:
        try:
            return await run()
        except ConcurrencyConflict as conflict:
            if attempt == CONFLICT_ATTEMPTS:
                log.warning("%s: a conflict on each of %d attempts; giving up", what, attempt)
                if lost is not None:
                    raise OutcomeUnknown(f"{what}: {lost}") from conflict
                raise StillContended(f"{what}: {conflict}") from conflict
        except OutcomeUnknown as unknown:
            if not keyed or attempt == CONFLICT_ATTEMPTS:
                raise
            lost = unknown
            log.info("%s: its commit's outcome was lost; running it again under its key", what)
        except IdempotencyKeyReused:
            raise  # the key is bound to another request: the lost attempt did not commit
        except Exception as error:
            if lost is None:
                raise
            log.warning("%s: after a lost commit, the run under its key failed", what, exc_info=True)
            raise OutcomeUnknown(f"{what}: {lost}; then {type(error).__name__}") from error
        await asyncio.sleep(jittered_pause(CONFLICT_BACKOFF_S, attempt))
        attempt += 1
