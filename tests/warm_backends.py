"""PostgreSQL backends kept warm from one test to the next, in each test process.

Every test on PostgreSQL starts a service of its own, whose pools and listener open connections:
2,767 in a whole run. A new connection costs PostgreSQL a new backend process, which then loads into
its own caches the catalog entries of every table and index it touches: about 12 ms of the server's
CPU and 2.6 ms of the test process's for each (a bare connection 4.6 ms of the server's, its first
read of each of the 22 tables 8 ms more). So here a connection that the code under test closes
cleanly (outside a transaction) is reset as asyncpg's own pool resets one (`Connection.reset`: LISTEN
registrations, advisory locks and session settings undone) and kept; the next `asyncpg.connect` with
the same arguments, on the same event loop, is handed it instead of a new one, after a round trip
that proves it alive. A connection closed any other way (terminated, lost, thrown away mid
transaction, failing its reset) is closed for real, so tests of dead connections meet what they
stage. Over a run, PostgreSQL's CPU (its backends', as the postmaster reaps them) fell from 50 to
28-33 seconds.

Only the test processes do this (`asyncpg.connect` is replaced in them, and the services the tests
run there connect through it); the `ordersaga` processes the tests start connect as they always do.
The old owner's handle is the same object as the new owner's, as it is with no pool in front: code
that used a connection after closing it would meet the next owner's session here. It relies on
asyncpg's `Connection.reset` and `is_in_transaction`, and on its `_top_xact` (the transaction asyncpg
manages), pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

import asyncpg
import pytest

# Kept per event loop (the tests' one), at most this many: enough for a service's pools, and few
# enough that a run's peak (50 to 76 client connections, the four test processes' keep included)
# stays well below the server's 100.
KEPT = 6
_connect = asyncpg.connect
_kept: dict[asyncio.AbstractEventLoop, deque[tuple[str, _KeptConnection]]] = {}


class _KeptConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that, closed cleanly, is reset and kept for the next connect."""

    _key: str | None = None
    _idle = False  # kept, and not handed out since

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        if self._idle:
            return  # closed already: it is another connect's to hand out now
        if self._key is None or self.is_closed():
            await super().close(timeout=timeout)
            return
        # Cleanly means outside a transaction: SQLAlchemy rolls back before it closes, and throws a
        # connection away (invalidates it) mid transaction without; one it throws away outside a
        # transaction is as good as any after the reset. Kept only on the tests' own loop, in the
        # main thread: a loop that set-up runs in another thread ends with it, and what it kept
        # would never be closed.
        clean = not self.is_in_transaction() and getattr(self, "_top_xact", None) is None
        if not clean or threading.current_thread() is not threading.main_thread():
            await super().close(timeout=timeout)
            return
        try:
            await self.reset(timeout=min(timeout or 5, 5))
        except asyncio.CancelledError:
            self.terminate()
            raise
        except Exception:
            self.terminate()  # closed all the same, as asked
            return
        # Nothing is awaited from here on, so that no error can reach the caller (which would then
        # terminate it) once another connect may have it.
        self._idle = True
        kept = _kept.setdefault(asyncio.get_running_loop(), deque())
        kept.append((self._key, self))
        while len(kept) > KEPT:
            oldest = kept.popleft()[1]
            oldest._idle = False
            oldest.terminate()

    def terminate(self) -> None:
        # A late terminate from the owner that closed it (SQLAlchemy's, after a cancelled close)
        # must not end it under its next owner.
        if not self._idle:
            super().terminate()


async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """`asyncpg.connect`, handing out a kept connection made with the same arguments if one is alive."""
    if "connection_class" in kwargs:
        return await _connect(*args, **kwargs)
    key = repr((args, sorted(kwargs.items())))
    kept = _kept.get(asyncio.get_running_loop(), deque())
    # Taken out before the first await, so that two connects at once never take the same one.
    while (entry := next((entry for entry in kept if entry[0] == key), None)) is not None:
        kept.remove(entry)
        connection = entry[1]
        connection._idle = False
        try:
            # Bounded as a whole: the first statement also closes what the last owner prepared.
            async with asyncio.timeout(5):
                await connection.fetchval("SELECT 1")
        except asyncio.CancelledError:
            connection.terminate()
            raise
        except Exception:
            connection.terminate()  # its backend is gone (terminated, or its database dropped)
            continue
        return connection
    connection = await _connect(*args, connection_class=_KeptConnection, **kwargs)
    connection._key = key
    return connection


def pytest_configure(config: pytest.Config) -> None:
    asyncpg.connect = connect
