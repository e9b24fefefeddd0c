"""The wall clock, as the orchestrator's Clock port."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        """Return once `now()` has reached `when`, never before: a deadline waited for has passed
        when the waiter looks. asyncio times its sleeps with the monotonic clock and may wake a timer
        up to its resolution early, while deadlines are wall-clock times, so one sleep can end a
        little short of `when`; the rest is slept again."""
        while (left := (when - self.now()).total_seconds()) > 0:  # noqa: ASYNC110 (a time, not an event)
            await asyncio.sleep(left)
