"""What every reader of the read side shares: its engine, and one statement per connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, Result, Row, text
from sqlalchemy import exc as sa_errors
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from persistence.database import ONE_STATEMENT, make_blocking_engine

T = TypeVar("T")
# A read of one statement: on SQLite it goes without BEGIN (ONE_STATEMENT); elsewhere the option
# would do nothing.
_ALONE = {ONE_STATEMENT: True}


class ReadEngine:
    """The read side's engine: `engine`, the async one, for readers that hold a connection for
    several statements, and `read`, which runs one statement alone on a connection of its own.

    On a SQLite file, `read` hands the statement to a thread once, where a blocking twin of the
    engine (`blocking`, sqlite3) runs it whole. Through the async driver (aiosqlite) each of its
    calls is a hand-off to the connection's own thread and back: five for one statement (a cursor,
    the statement, the fetch, the cursor's close, the rollback as the connection goes back to its
    pool), about a third of a simple query's CPU (docs/performance.md, lever 31). The twin is
    bounded as the async pool is: as many threads, each with a connection, as that pool's size; a
    read that no thread takes within that pool's time-out is withdrawn, never run, and raises
    sqlalchemy.exc.TimeoutError as the pool does (the edge answers SERVICE_UNAVAILABLE). A read
    whose caller stops waiting before a thread takes it is not run either; one already running ends
    in its thread. Its errors are those of the same sqlite3 module, as SQLAlchemy raises them.
    Elsewhere (PostgreSQL, a SQLite database in memory, a pool without a bound) `read` runs on
    `engine`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.blocking: Engine | None = None
        pool = engine.pool
        if engine.dialect.name == "sqlite" and isinstance(pool, QueuePool) and _is_file(engine.url):
            self._size, self._timeout = pool.size(), pool.timeout()
            self.blocking = make_blocking_engine(
                engine.url.render_as_string(hide_password=False),
                writer=False,
                pool_size=self._size,
                max_overflow=0,
                pool_timeout=self._timeout,
            )
            self._threads = ThreadPoolExecutor(self._size, "ordersaga-reader")

    async def read(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        """`take` of the result of `query`, run alone on a connection of its own (`take` runs where
        the statement ran: it must consume the result). Raises what SQLAlchemy raises for the
        statement, and sqlalchemy.exc.TimeoutError when no connection was free in time."""
        if self.blocking is None:
            async with self.engine.connect() as conn:
                if self.engine.dialect.name == "sqlite":
                    await conn.execution_options(**_ALONE)
                return take(await conn.execute(query))  # type: ignore[call-overload]
        running = self._threads.submit(self._read_blocking, query, take)
        # Withdrawn if no thread took it in time. It waits in the executor's queue rather than for
        # a semaphore, which would cost a read that waits a wake-up of its own on the event loop.
        withdrawal = asyncio.get_running_loop().call_later(self._timeout, running.cancel)
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            if running.cancelled() and not _being_cancelled():
                raise sa_errors.TimeoutError(
                    f"no read connection of {self._size} was free within {self._timeout:.2f} s"
                ) from None
            raise  # its caller stopped waiting
        finally:
            withdrawal.cancel()

    def _read_blocking(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        assert self.blocking is not None
        with self.blocking.connect() as conn:
            return take(conn.execution_options(**_ALONE).execute(query))  # type: ignore[call-overload]

    def close(self) -> None:
        """Wait for the reads running in threads to end, and close the twin's connections (not
        `engine`, which its maker disposes)."""
        if self.blocking is not None:
            self._threads.shutdown(wait=True)
            self.blocking.dispose()


def _is_file(url: URL) -> bool:
    """Whether a SQLite URL names a file, which a second engine opens as the same database."""
    return url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory"


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Reader:
    def __init__(self, reads: ReadEngine) -> None:
        self._reads = reads

    @property
    def engine(self) -> AsyncEngine:
        return self._reads.engine

    async def ping(self) -> None:
        """Raises unless the database answers."""
        await self._one(text("SELECT 1"))

    async def _count(self, query: object) -> int:
        return await self._reads.read(query, Result.scalar_one)  # type: ignore[no-any-return]

    async def _one(self, query: object) -> Row | None:
        return await self._reads.read(query, Result.first)

    async def _all(self, query: object) -> Sequence[Row]:
        return await self._reads.read(query, Result.all)

    async def _typed_one(self, query: object, row: Callable[..., T]) -> T | None:
        """The first row of `query` as `row(**columns)` (a class of persistence/read/rows.py)."""
        found = await self._one(query)
        return None if found is None else _typed(found, row)

    async def _typed_all(self, query: object, row: Callable[..., T]) -> list[T]:
        """Every row of `query` as `row(**columns)`."""
        return [_typed(found, row) for found in await self._all(query)]


def _typed(found: Row[Any], row: Callable[..., T]) -> T:
    return row(**found._mapping)
