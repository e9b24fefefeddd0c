"""One driver task per running saga: it asks `next_action` what to do, waits where the saga must wait
(its durable timers are its deadlines and retry times, kept in the journal), runs the step, and backs
off after errors. A driver steps back when this process no longer holds the saga's lease."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from domain.model.saga import Call, Emit, Finished, SagaPolicy, SagaState, Wait, next_action
from domain.orchestration.attempts import CONFLICT_ATTEMPTS, jittered_pause
from domain.orchestration.context import current_saga, current_step
from domain.orchestration.steps import LeaseLost, Steps
from domain.ports import Clock, ConcurrencyConflict, OutcomeUnknown

log = logging.getLogger("ordersaga.saga")

# After an unexpected error (the database away, a bug) a driver backs off (jittered_pause) from this
# long, doubling up to the cap, and reloads the saga from its journal before trying again.
_ERROR_BACKOFF_S = 0.05
_ERROR_BACKOFF_CAP_S = 30.0


class Drivers:
    def __init__(self, steps: Steps, clock: Clock, policy: SagaPolicy) -> None:
        self._steps = steps
        self._clock = clock
        self._policy = policy
        self._drivers: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        return len(self._drivers)

    def driving(self, saga_id: str) -> bool:
        return saga_id in self._drivers

    def spawn(self, saga_id: str, state: SagaState | None) -> None:
        """Start the saga's driver, from `state` or, when None, from its journal, in place of any it
        has: one driver per saga (a stopped one's commit in flight still lands, and the journal's
        expected version makes the new one reload)."""
        earlier = self._drivers.get(saga_id)
        if earlier is not None:
            earlier.cancel()
        task = asyncio.create_task(self._drive(saga_id, state), name=f"saga-{saga_id}")
        self._drivers[saga_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._drivers.get(saga_id) is done:
                del self._drivers[saga_id]

        task.add_done_callback(forget)

    def resume(self, saga_ids: Iterable[str]) -> None:
        """Start a driver, from the journal, for each saga that has none."""
        for saga_id in saga_ids:
            if saga_id not in self._drivers:
                self.spawn(saga_id, None)

    async def halt(self, saga_id: str) -> bool:
        """Stop the saga's driver; whether it had one."""
        driver = self._drivers.pop(saga_id, None)
        if driver is None:
            return False
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        return True

    async def stop(self) -> None:
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

    async def _drive(self, saga_id: str, state: SagaState | None) -> None:
        # The task runs in a copy of its creator's context, so these are the driver's alone.
        current_saga.set(saga_id)
        # Failures in a row (errors, and rounds of CONFLICT_ATTEMPTS conflicts), which the backoff
        # grows with; and conflicts in a row.
        failures, conflicts = 0, 0
        while True:
            current_step.set(state.step.value if state is not None and state.step else None)
            try:
                self._steps.check_lease(saga_id)
                if state is None:
                    state = await self._steps.load(saga_id)
                    if state is None:
                        return  # an intervention on an unknown id that failed: nothing to drive
                match next_action(state, self._clock.now(), self._policy):
                    case Finished():
                        return
                    case Wait(until):
                        await self._clock.sleep_until(until)
                        continue
                    case Emit():
                        state = await self._steps.advance(state, None)
                    case Call() as call:
                        state = await self._steps.call(state, call)
                failures, conflicts = 0, 0
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                # Another process drives it (or will, once the lease this one lost has expired):
                # step back rather than write, or retry against its commits forever.
                # DEBUG: with several processes this is routine, once per saga another one drives.
                log.debug("saga %s: not leased to this process; leaving it to its owner", saga_id)
                return
            except ConcurrencyConflict:
                # Another writer moved the saga on: reload it. One that keeps doing so (a stale
                # driver racing the live one) is paced like an error rather than spun on.
                state, conflicts = None, conflicts + 1
                if conflicts >= CONFLICT_ATTEMPTS:
                    failures += 1
                    pause = jittered_pause(_ERROR_BACKOFF_S, failures, _ERROR_BACKOFF_CAP_S)
                    log.warning(
                        "saga %s: %d conflicts in a row; next try in %.1f s", saga_id, conflicts, pause
                    )
                    await asyncio.sleep(pause)
            except Exception as error:
                # The first failure of a run is logged with its traceback; those that follow, one line
                # per backoff, so a saga that keeps failing does not flood the log. A connection lost
                # as the saga's commit went through (OutcomeUnknown) is one line each time: expected of
                # a database that drops connections, and its journal says whether the commit took.
                failures += 1
                pause = jittered_pause(_ERROR_BACKOFF_S, failures, _ERROR_BACKOFF_CAP_S)
                if isinstance(error, OutcomeUnknown):
                    log.warning(
                        "saga %s: %s; reading it again from its journal in %.1f s", saga_id, error, pause
                    )
                elif failures == 1:
                    log.exception("saga %s: advancing failed; retrying from its journal", saga_id)
                else:
                    log.warning(
                        "saga %s: advancing still fails (%s); next try in %.1f s",
                        saga_id,
                        type(error).__name__,
                        pause,
                    )
                await asyncio.sleep(pause)
                state = None
