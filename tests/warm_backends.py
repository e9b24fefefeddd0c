"""PostgreSQL backends kept warm from one test to the next, in each test process.

Every test on PostgreSQL starts a service of its own, whose pools and listener open connections:
2,767 in a whole run. A new connection costs PostgreSQL a new backend process, which then loads into
its own caches the catalog entries of every table and index it touches: about 12 ms of the server's
CPU and 2.6 ms of the test process's for each (a bare connection 4.6 ms of the server's, its first
read of each of the 22 tables 8 ms more). So here a connection that the code under test closes cleanly
(outside a transaction) is reset as asyncpg's own pool resets one (`Connection.reset`: LISTEN
registrations, advisory locks, cursors and session settings undone; its temporary tables and
sequences and any role set too) and kept; the next `asyncpg.connect` with the same plain
arguments, on the tests' event loop, is handed it instead of a new one, after a round trip that proves
it alive. A connection closed any other way (terminated, lost, thrown away mid transaction, failing its
reset, with listeners or loggers added to it) is closed for real, so tests of dead connections meet
what they stage; what is kept is closed at the end of the run. Not undone: statements prepared with
SQL's PREPARE, and type codecs (SQLAlchemy sets the same ones on every connection). Over a run,
PostgreSQL's CPU (its backends', as the postmaster reaps them) fell from 50 to 28-33 seconds.

Only the test processes do this (`asyncpg.connect` is replaced in them, and the services the tests
run there connect through it); the `ordersaga` processes the tests start connect as they always do.
The old owner's handle is the same object as the new owner's, as it is with no pool in front: code
that used a connection after closing it would meet the next owner's session here. It relies on
asyncpg's `Connection.reset`, `get_reset_query` and `is_in_transaction`, and on its `_top_xact` (the
transaction asyncpg manages) and the sets of callbacks a connection holds, pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

# Kept at most this many: enough for a service's pools, and few enough that a run's peak (50 to 76
# client connections, the four test processes' keep included) stays well below the server's 100.
KEPT = 6
_connect = asyncpg.connect
_kept: deque[tuple[str, _KeptConnection]] = deque()
# The event loop the tests run on (pytest-asyncio's, for the whole session): connections made on
# another (a set-up's own `asyncio.run`) end with it, and are never kept.
_tests_loop: asyncio.AbstractEventLoop | None = None


class _KeptConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that, closed cleanly, is reset and kept for the next connect."""

    _key: str | None = None
    _idle = False  # kept, and not handed out since

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's signature)
        if self._idle:
            return  # closed already: it is another connect's to hand out now
        if self._key is None or self.is_closed() or asyncio.get_running_loop() is not _tests_loop:
            await super().close(timeout=timeout)
            return
        # Cleanly means outside a transaction: SQLAlchemy rolls back before it closes, and throws a
        # connection away (invalidates it) mid transaction without; one it throws away outside a
        # transaction is as good as any after the reset. Callbacks its owner added would go on
        # hearing of the next owner's connection.
        clean = not self.is_in_transaction() and getattr(self, "_top_xact", None) is None
        if not clean or self._termination_listeners or self._log_listeners or self._query_loggers:
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
        _kept.append((self._key, self))
        while len(_kept) > KEPT:
            _end(_kept.popleft()[1])

    def get_reset_query(self) -> str:
        # Beyond what asyncpg's pool undoes (it hands a connection back to the same code): the role
        # first, so that the rest runs as the connection's own user.
        return "\n".join(
            [
                "SET SESSION AUTHORIZATION DEFAULT;",
                "RESET ROLE;",
                super().get_reset_query(),
                "DISCARD TEMP;",
                "DISCARD SEQUENCES;",
            ]
        )

    def terminate(self) -> None:
        # A late terminate from the owner that closed it (SQLAlchemy's, after a cancelled close)
        # must not end it under its next owner.
        if not self._idle:
            super().terminate()


def _end(connection: _KeptConnection) -> None:
    connection._idle = False
    connection.terminate()


def _plain(value: Any) -> bool:
    """Whether `value` is made of strings, numbers, None, and lists, tuples and dicts of those: what
    its repr tells apart (an object's repr may name only its id, which a later object can reuse)."""
    if value is None or isinstance(value, str | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(map(_plain, value))
    return isinstance(value, dict) and all(map(_plain, value)) and all(map(_plain, value.values()))


async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """`asyncpg.connect`, handing out a kept connection made with the same arguments if one is alive."""
    if (
        "connection_class" in kwargs
        or not _plain([args, kwargs])
        or asyncio.get_running_loop() is not _tests_loop
    ):
        return await _connect(*args, **kwargs)  # never kept
    key = repr((args, sorted(kwargs.items())))
    # Taken out before the first await, so that two connects at once never take the same one.
    while (entry := next((e for e in _kept if e[0] == key), None)) is not None:
        _kept.remove(entry)
        connection = entry[1]
        connection._idle = False
        try:
            async with asyncio.timeout(5):  # alive: its backend may have been terminated meanwhile
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


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def _keep_on_the_tests_loop() -> AsyncIterator[None]:
    """Names the tests' loop (the only one connections are kept on), and closes what is kept at the
    end of the run."""
    global _tests_loop
    _tests_loop = asyncio.get_running_loop()
    yield
    _tests_loop = None
    while _kept:
        _end(_kept.popleft()[1])
