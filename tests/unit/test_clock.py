"""The wall clock's sleep ends at its time or after, never before: a driver that slept until a
step's deadline must find the deadline passed, or it would run the step instead of timing it out."""

from __future__ import annotations

from datetime import datetime, timedelta

from api.clock import SystemClock


class SlewedClock(SystemClock):
    """The wall clock running 2 % slow against asyncio's monotonic clock, as a clock being slewed
    back by NTP does (by far less): a sleep of the wall-clock time left ends short of it."""

    def __init__(self) -> None:
        self._start = super().now()

    def now(self) -> datetime:
        return self._start + (super().now() - self._start) * 0.98


async def test_sleeping_until_a_time_returns_once_the_clock_has_reached_it() -> None:
    clock = SlewedClock()
    for n in range(20):
        when = clock.now() + timedelta(milliseconds=5 + n)
        await clock.sleep_until(when)
        assert clock.now() >= when


async def test_sleeping_until_a_past_time_returns_at_once() -> None:
    clock = SystemClock()
    await clock.sleep_until(clock.now() - timedelta(seconds=1))
