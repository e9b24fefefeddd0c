"""Per-principal limits on mutations, so that one client cannot flood `placeOrder` or
`receiveStock`: moving windows kept in this process's memory by the `limits` library."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

# With authentication on, unless configured otherwise: bursts of 20 a second, 600 a minute.
DEFAULT_MUTATION_LIMITS = "20/second;600/minute"


class MutationRateLimit:
    """Limits in the `limits` notation (`"20/second;600/minute"`), each counted per principal."""

    def __init__(self, spec: str) -> None:
        """ValueError when `spec` is not in that notation."""
        self.spec = spec
        self._limits: list[RateLimitItem] = parse_many(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # The most mutations one operation may hold: more could never be admitted, however long the
        # caller waited.
        self.most_at_once = min(limit.amount for limit in self._limits)

    def admit(self, subject: str, mutations: int) -> float | None:
        """Count `mutations` for `subject` and answer None, or, when that would pass a limit, count
        nothing and answer the seconds until it may try again."""
        for limit in self._limits:
            if not self._limiter.test(limit, "mutations", subject, cost=mutations):
                reset_at = self._limiter.get_window_stats(limit, "mutations", subject).reset_time
                return max(1.0, math.ceil(reset_at - time.time()))
        for limit in self._limits:
            self._limiter.hit(limit, "mutations", subject, cost=mutations)
        return None
