"""The service's long-lived background tasks (the commit listener, the lease rounds), kept running:
a task that dies is logged with its traceback, restarted after a pause that grows while it keeps
dying, and reported to /readyz while it waits, so that an operator and a load balancer see it instead
of a process that quietly stopped hearing other processes' commits or renewing its leases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from domain.orchestration.attempts import jittered_pause
from persistence.database import brief, is_transient

log = logging.getLogger("ordersaga.supervision")
T = TypeVar("T")

FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 30.0
# A run that lasted this long was healthy: the next death starts the pauses afresh.
HEALTHY_RUN_S = 60.0
# A task still running this long after it was stopped is named in the log (it holds the stop).
SLOW_STOP_S = 10.0


async def unless_busy(read: Callable[[], Awaitable[T]], what: str) -> T | None:
    """`read()`, or None when the database is busy or away (`is_transient`), logged: for a task that
    reads on a schedule, a reason to skip one read and keep what was read before, not to die and have
    the service report not ready. Other errors raise (the supervisor restarts the task)."""
    try:
        return await read()
    except Exception as error:
        if not is_transient(error):
            raise
        log.info("%s not read (%s); keeping what was read before", what, brief(error))
        return None


def stop_if_cancelled() -> None:
    """Raise CancelledError if the current task was cancelled and goes on regardless: a library's
    `asyncio.wait_for` (nats-py's requests and connects, say) drops a cancellation that arrives as
    what it waits for completes (Python 3.11, CPython gh-86296), and a loop that ran on would never
    stop. For the top of such a loop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; whether it was set. A background task's
    wait for its next wake-up: a cancellation always ends it, where `asyncio.wait_for` on Python 3.11
    drops one that arrives as the event is set (CPython gh-86296), and the task stopped then ran on
    while its service's stop waited for it for ever."""
    stop_if_cancelled()  # a stop a library dropped before this wait: none of it waited out
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


async def every(seconds: float, refresh: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `refresh` every `seconds`, until cancelled, each `unless_busy`: the body of a task that
    reads the database on a schedule."""
    while True:
        await unless_busy(refresh, what)
        await asyncio.sleep(seconds)


class LocalChanges:
    """The changes a process makes, at once, to a copy it also refreshes from the database on a
    schedule (staged faults, warehouse service URLs). A scheduled read that such a change overtook
    holds what the database held before it; applied, it would undo the change until the next read."""

    def __init__(self) -> None:
        self._count = 0

    def made(self) -> None:
        """A change was just made to the copy (and committed to the database)."""
        self._count += 1

    async def unless_overtaken(self, read: Callable[[], Awaitable[T]]) -> T | None:
        """What `read()` returns, or None if a change was made while it ran."""
        before = self._count
        value = await read()
        return value if self._count == before else None


@dataclass(frozen=True, slots=True)
class Down:
    """A task waiting to be restarted: why it died, and how often it has so far."""

    reason: str
    deaths: int


class Supervisor:
    """Runs each task given to `keep` until `stop`, restarting it whenever it ends on its own."""

    def __init__(
        self,
        first_pause_s: float = FIRST_PAUSE_S,
        max_pause_s: float = MAX_PAUSE_S,
        slow_stop_s: float = SLOW_STOP_S,
    ) -> None:
        self._first_pause_s, self._max_pause_s = first_pause_s, max_pause_s
        self._slow_stop_s = slow_stop_s
        self._tasks: list[asyncio.Task[None]] = []
        self.down: dict[str, Down] = {}

    def keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run()` as the task `name`, again after it raises or returns (a long-lived task that
        returns has stopped as surely as one that raised)."""
        self._tasks.append(asyncio.create_task(self._keep(name, run), name=name))

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended, however long that takes; a task still
        running after `slow_stop_s` is named in the log, since it holds the service's stop."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, running = await asyncio.wait(self._tasks, timeout=self._slow_stop_s)
            for task in running:
                log.warning(
                    "background task %s has not stopped %gs after it was asked to",
                    task.get_name(),
                    self._slow_stop_s,
                )
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        deaths = in_a_row = 0
        while True:
            started = loop.time()
            try:
                await run()
                reason = "it returned"
                log.error("background task %s stopped (%s); restarting", name, reason)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                log.exception("background task %s died; restarting", name)
            in_a_row = 1 if loop.time() - started >= HEALTHY_RUN_S else in_a_row + 1
            deaths += 1
            self.down[name] = Down(reason, deaths)
            await asyncio.sleep(jittered_pause(self._first_pause_s, in_a_row, self._max_pause_s))
            del self.down[name]
