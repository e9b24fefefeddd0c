"""What every reader of the read side shares: its engine, and one statement per connection."""

from __future__ import annotations

import asyncio
import contextlib
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
    pool), about two fifths of a simple query's CPU (docs/performance.md, lever 31). The twin is
    bounded as the async pool is: as many threads, each with a connection, as that pool's size
    (its overflow is not counted); a read that finds every thread busy and that none takes within
    that pool's time-out is withdrawn, never run, and raises sqlalchemy.exc.TimeoutError as the pool
    does (the edge answers SERVICE_UNAVAILABLE). A read whose caller stops waiting before a thread
    takes it is not run either; one already running ends in its thread. Its errors are those of the
    same sqlite3 module, as SQLAlchemy raises them. Elsewhere (PostgreSQL, a SQLite database in
    memory, a pool of no fixed size) and once closed, `read` runs on `engine`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._threads: _Threads | None = None
        pool = engine.pool
        if (
            engine.dialect.name == "sqlite"
            and _is_file(engine.url)
            and isinstance(pool, QueuePool)
            and pool.size() > 0  # 0: as many connections as asked for
        ):
            self._threads = _Threads(engine, pool.size(), pool.timeout())

    @property
    def blocking(self) -> Engine | None:
        """The blocking twin reads of one statement run on; None where they run on `engine`."""
        return None if self._threads is None else self._threads.engine

    async def read(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        """`take` of the result of `query`, run alone on a connection of its own (`take` runs where
        the statement ran: it must consume the result). Raises what SQLAlchemy raises for the
        statement, and sqlalchemy.exc.TimeoutError when no connection was free in time."""
        if self._threads is not None:
            return await self._threads.read(query, take)
        async with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                await conn.execution_options(**_ALONE)
            return take(await conn.execute(query))  # type: ignore[call-overload]

    async def close(self) -> None:
        """Withdraw the reads no thread has taken yet (they raise TimeoutError), wait for the
        others to end, and close the twin's connections; reads from here on run on `engine`, which
        this does not dispose (its maker does)."""
        threads, self._threads = self._threads, None
        if threads is not None:
            await threads.close()


class _Threads:
    """A blocking twin of a SQLite file's async engine, with `size` threads and connections; a read
    that finds every thread busy waits at most `timeout` seconds for one (see ReadEngine)."""

    def __init__(self, engine: AsyncEngine, size: int, timeout: float) -> None:
        self.engine = make_blocking_engine(
            engine.url.render_as_string(hide_password=False),
            writer=False,
            pool_size=size,
            max_overflow=0,
            pool_timeout=timeout,
        )
        self._size, self._timeout = size, timeout
        self._executor = ThreadPoolExecutor(size, "ordersaga-reader")
        # Reads handed to the executor whose end the event loop has not seen yet.
        self._running = 0
        self._closing = False

    async def read(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        loop = asyncio.get_running_loop()
        read = self._executor.submit(self._read, query, take)
        self._running += 1
        # Withdrawn if no thread takes it in time. It waits in the executor's queue rather than for
        # a semaphore, which would cost a read that waits a wake-up of its own on the event loop.
        # No timer while a thread is free, as the event loop counts them: a read whose thread has
        # just ended counts until the loop sees it end, so with a time-out near 0 a read can be
        # withdrawn as a thread frees up (the async pool, so set, refuses more).
        withdrawal = loop.call_later(self._timeout, read.cancel) if self._running > self._size else None
        try:
            return await asyncio.wrap_future(read)
        except asyncio.CancelledError:
            if read.cancelled() and not _being_cancelled():
                why = "the read engine closed" if self._closing else f"they stayed busy {self._timeout:.2f} s"
                raise sa_errors.TimeoutError(
                    f"no thread of the {self._size} for reads took the read: {why}"
                ) from None
            raise  # its caller stopped waiting
        finally:
            if withdrawal is not None:
                withdrawal.cancel()
            if read.done():
                self._running -= 1
            else:  # its caller stopped waiting: its thread is busy until the read ends
                read.add_done_callback(lambda _: _on_loop(loop, self._ended))

    def _ended(self) -> None:
        self._running -= 1

    def _read(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        with self.engine.connect() as conn:
            return take(conn.execution_options(**_ALONE).execute(query))  # type: ignore[call-overload]

    async def close(self) -> None:
        """Withdraw the reads no thread has taken yet, wait for the others to end (off the event
        loop) and close the connections."""
        self._closing = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._executor.shutdown)
        self.engine.dispose()


def _is_file(url: URL) -> bool:
    """Whether a SQLite URL names a file, which a second engine opens as the same database."""
    return url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory"


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Run `callback` on `loop` from another thread, unless the loop has closed meanwhile (its
    reads are then over)."""
    with contextlib.suppress(RuntimeError):  # closed
        loop.call_soon_threadsafe(callback)


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
