"""Per-principal limits on mutations, so that one client cannot flood `placeOrder` or
`receiveStock`: moving windows counted by the `limits` library, in this process's memory by default,
or, for several processes that must hold one limit together, in a store they share
(`serve --rate-limit-storage redis://host:6379`, any asynchronous storage `limits` supports).

`limits` is imported only when a limit is set: without authentication there is none by default, and
with the Redis client it loads it took about 25 ms of CPU of every start."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.storage import Storage

log = logging.getLogger("ordersaga.access")

# With authentication on, unless configured otherwise: bursts of 20 a second, 600 a minute.
DEFAULT_MUTATION_LIMITS = "20/second;600/minute"
# Counted in this process only: with several processes, each admits the whole limit.
IN_MEMORY = "memory://"
# How long a mutation waits for a shared store before it is admitted without it.
STORE_TIMEOUT_S = 0.25


def shared_storage(uri: str) -> Storage:
    """The asynchronous `limits` storage at `uri` (`memory://`, `redis://host:port/db`,
    `memcached://…`; an `async+` prefix may be given or not). Raises ValueError for a URI `limits`
    does not know or whose client library is not installed (ordersaga installs Redis's); it
    connects on first use."""
    from limits.aio.storage import Storage  # lazily, as the module's docstring says
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    try:
        storage = storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
    except ConfigurationError as error:
        raise ValueError(f"rate limit storage {uri}: {error}") from None
    if not isinstance(storage, Storage):
        raise ValueError(f"{uri} is not an asynchronous rate limit storage")
    return storage


class MutationRateLimit:
    """Limits in the `limits` notation (`"20/second;600/minute"`), each counted per principal, in
    `storage` (a URI, see `shared_storage`)."""

    def __init__(self, spec: str, storage: str = IN_MEMORY) -> None:
        """ValueError when `spec` is not in that notation or `storage` is no storage URI."""
        from limits import parse_many  # lazily, as the module's docstring says
        from limits.aio.strategies import MovingWindowRateLimiter

        self.spec = spec
        self._limits: list[RateLimitItem] = parse_many(spec)
        self._limiter = MovingWindowRateLimiter(shared_storage(storage))
        # The most mutations one operation may hold: more could never be admitted, however long the
        # caller waited.
        self.most_at_once = min(limit.amount for limit in self._limits)

    async def admit(self, subject: str, mutations: int) -> float | None:
        """Count `mutations` for `subject` and answer None, or, when that would pass a limit, answer
        the seconds until it may try again. Each limit's count is taken atomically in its store
        (`hit`), so processes sharing a store cannot all slip under it at once; a refusal by a later
        limit leaves the earlier ones counted, which errs on refusing. A store that does not answer
        within STORE_TIMEOUT_S admits, with a warning logged: the limit protects the service, and
        refusing everyone while the store is away would be an outage of its own."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                for limit in self._limits:
                    if not await self._limiter.hit(limit, "mutations", subject, cost=mutations):
                        stats = await self._limiter.get_window_stats(limit, "mutations", subject)
                        return max(1.0, math.ceil(stats.reset_time - time.time()))
        except Exception as error:
            log.warning("rate limit storage unavailable (%s: %s); admitting", type(error).__name__, error)
        return None
