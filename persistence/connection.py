"""The connection that write-side work runs on, whatever the driver.

Work inside a transaction (participants, journal, catalog) is written once, as coroutines over `Db`.
On PostgreSQL it runs on the event loop over asyncpg (`AsyncDb`). On SQLite it runs in the writer's
own thread over the sqlite3 module (`BlockingDb`), a whole group commit in one hop: there every await
on the `Db` completes at once, so `run_blocking` runs the coroutine to its end without an event loop.
That spares the per-statement thread hand-off of an async SQLite driver, which dominated the cost of
a saga step. On either, the hot statements (`Prepared`) go straight to the driver, sqlite3 or
asyncpg (persistence/prepared.py).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol, TypeVar, overload

from sqlalchemy import CursorResult, Dialect, Executable, Select, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, NestedTransaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.ports import OutcomeUnknown
from persistence.database import brief
from persistence.prepared import Prepared, Rows

T = TypeVar("T")
S = TypeVar("S", bound="Deferred")


class Deferred(Protocol):
    """Writes a transaction gathers from all its work and sends at once, just before it commits."""

    def __init__(self, db: Db) -> None: ...
    async def flush(self) -> None:
        """Send what was gathered so far (also before the transaction reads what it wrote)."""
        ...

    async def seal(self) -> None:
        """The transaction's last writes, once every kind was flushed, right before COMMIT."""
        ...

    def gathered(self) -> int:
        """How many writes are gathered and not yet sent."""
        ...


class GatheredRows:
    """A Deferred of rows for one statement (`STATEMENT`, set by each kind), inserted at once: at the
    commit, or sooner when the transaction is about to read or change what they wrote (`flush`). A
    commit carrying many sagas' rows sends them in one statement, one round trip on PostgreSQL."""

    STATEMENT: ClassVar[Prepared]

    def __init__(self, db: Db) -> None:
        self._db = db
        self.rows: list[dict[str, Any]] = []

    async def flush(self) -> None:
        rows, self.rows = self.rows, []
        if rows:
            await self._db.execute(self.STATEMENT, rows)

    async def seal(self) -> None:
        pass

    def gathered(self) -> int:
        return len(self.rows)


class Savepoint(Protocol):
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class Db(Protocol):
    @property
    def dialect(self) -> Dialect: ...
    @property
    def waits_for_stock(self) -> bool:
        """Whether this transaction waits for a stock row another one holds (it writes that SKU's
        work alone) or fails at once (a commit shared by many sagas; persistence/write/stock_locks.py)."""
        ...

    @overload
    async def execute(self, statement: Prepared, parameters: Any = None) -> Rows: ...
    @overload
    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...
    async def begin_nested(self) -> Savepoint: ...
    async def pause(self, seconds: float) -> None:
        """Wait inside the transaction (a backoff), in the way the driver allows."""
        ...

    def deferred(self, kind: type[S]) -> S:
        """This transaction's one instance of `kind`, flushed before the transaction commits."""
        ...

    async def before_commit(self) -> None: ...
    def writes_so_far(self) -> tuple[int, int]:
        """Where this transaction's writes stand: statements run that may have written, and writes
        gathered to send before the commit. Equal before and after some work: it wrote nothing."""
        ...


def upsert(db: Db, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` in `db`'s dialect, to be given its ON CONFLICT clause
    (`on_conflict_do_nothing`, `on_conflict_do_update`), which both databases take but SQLAlchemy's
    generic insert has not."""
    return (postgresql if db.dialect.name == "postgresql" else sqlite).insert(table)


class _Transactional(ABC):
    def __init__(self) -> None:
        self._deferred: dict[type[Any], Deferred] = {}
        self._statements_written = 0

    @overload
    async def execute(self, statement: Prepared, parameters: Any = None) -> Rows: ...
    @overload
    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[Any]: ...
    async def execute(self, statement: Executable | Prepared, parameters: Any = None) -> Any:
        sql = statement.statement if isinstance(statement, Prepared) else statement
        if not isinstance(sql, Select):
            self._statements_written += 1
        return await self._execute(statement, parameters)

    def writes_so_far(self) -> tuple[int, int]:
        return self._statements_written, sum(writes.gathered() for writes in self._deferred.values())

    @abstractmethod
    async def _execute(self, statement: Executable | Prepared, parameters: Any) -> Any:
        """Run a statement on this transaction's connection, a prepared one as the driver allows."""

    def deferred(self, kind: type[S]) -> S:
        found = self._deferred.get(kind)
        if found is None:
            found = self._deferred[kind] = kind(self)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]

    async def before_commit(self) -> None:
        for writes in self._deferred.values():
            await writes.flush()
        for writes in self._deferred.values():
            await writes.seal()


class AsyncDb(_Transactional):
    """`prepared`: whether `Prepared` statements go straight to asyncpg (the fast path) or, like any
    other, through SQLAlchemy."""

    def __init__(self, conn: AsyncConnection, waits_for_stock: bool = False, prepared: bool = True) -> None:
        super().__init__()
        self._conn = conn
        self.dialect = conn.dialect
        self.waits_for_stock = waits_for_stock
        self._fast = prepared and conn.dialect.driver == "asyncpg"
        self._cursor: Any = None

    def _adaptor_cursor(self) -> Any | None:
        """A cursor of the asyncpg adaptor the connection holds, whose statements share the
        transaction (and the prepared statements) of the ones SQLAlchemy runs; None when a statement
        must go through SQLAlchemy. Asked at each statement: only in a transaction SQLAlchemy has
        begun (one that a statement on the adaptor began would be unknown to SQLAlchemy, whose
        commit would leave it uncommitted), and only on a connection still valid."""
        conn = self._conn
        if not self._fast or not conn.in_transaction() or conn.invalidated:
            return None
        if self._cursor is None:
            self._cursor = conn.sync_connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    async def _execute(self, statement: Executable | Prepared, parameters: Any) -> Any:
        if isinstance(statement, Prepared):
            cursor = self._adaptor_cursor()
            if cursor is not None:
                return await statement.run_async(self._conn, cursor, parameters)
            statement = statement.statement
        return await self._conn.execute(statement, parameters)

    async def begin_nested(self) -> Savepoint:
        return await self._conn.begin_nested()

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class BlockingDb(_Transactional):
    """`prepared`: whether `Prepared` statements go straight to sqlite3 (the fast path) or, like any
    other, through SQLAlchemy."""

    def __init__(self, conn: Connection, prepared: bool = True) -> None:
        super().__init__()
        self._conn = conn
        self._prepared = prepared
        self.dialect = conn.dialect
        # SQLite has no row locks: its one writer holds the database's from BEGIN IMMEDIATE.
        self.waits_for_stock = True
        # The transaction's own sqlite3 connection, which SQLAlchemy began (BEGIN IMMEDIATE).
        self._cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def close(self) -> None:
        """Close the transaction's sqlite3 cursor, in the writer's thread, before its connection goes
        back to the pool. Left open, the cursor would be freed wherever its last reference goes (the
        traceback of an error carried to the event loop), and sqlite3 resets the statement a cursor
        last ran when it is freed: by then the connection's statement cache may have handed that
        statement to the next transaction, which fails with "bad parameter or other API misuse"."""
        self._cursor.close()

    async def _execute(self, statement: Executable | Prepared, parameters: Any) -> Any:
        if isinstance(statement, Prepared):
            if self._prepared:
                return statement.run(self._cursor, self.dialect, parameters)
            statement = statement.statement
        return self._conn.execute(statement, parameters)

    async def begin_nested(self) -> Savepoint:
        return _BlockingSavepoint(self._conn.begin_nested())

    async def pause(self, seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 - runs in the writer's own thread, never on the event loop


class _BlockingSavepoint:
    def __init__(self, savepoint: NestedTransaction) -> None:
        self._savepoint = savepoint

    async def commit(self) -> None:
        self._savepoint.commit()

    async def rollback(self) -> None:
        self._savepoint.rollback()


def run_blocking(work: Awaitable[T]) -> T:
    """Run work that only awaits a `BlockingDb` to its end, here and now."""
    steps = work.__await__()
    try:
        steps.send(None)
    except StopIteration as finished:
        result: T = finished.value
        return result
    steps.close()
    raise RuntimeError("work in a SQLite transaction awaited something other than its database")


class Writer(Protocol):
    """Runs `work` in a transaction of its own and commits it; answers what `work` returns. How the
    writes outside the sagas' own (the outbound relays' positions and deliveries, staged faults) are
    made: on SQLite through the commit lanes' one writer (GroupCommitRunner.run_on_connection), since
    the database takes one writer at a time and a second connection would only contend for its lock;
    on PostgreSQL on an engine of their own (`EngineWriter`). Raises what `work` and the database
    raise, and OutcomeUnknown when the commit failed (it may have committed); through the commit
    lanes also WritersBusy when no lane took the work in time (persistence/write/group_commit.py)."""

    def __call__(self, work: Callable[[Db], Awaitable[T]], /) -> Awaitable[T]: ...


# How a transaction on the async engine commits: AsyncConnection.commit, unless a fault is staged
# (persistence/write/commit_faults.py).
Commit = Callable[[AsyncConnection], Awaitable[None]]


class EngineWriter:
    """A `Writer` on an async engine: each piece of work in a transaction of its own, run to its end
    even when its caller is cancelled (a relay stopped, a client gone), so that what an attempt
    found out (a delivery's outcome, a position reached) is kept once known. A commit that fails
    raises OutcomeUnknown: its transaction may have committed (a lost answer), so its caller must
    not be told that nothing was done."""

    def __init__(self, engine: AsyncEngine, commit: Commit = AsyncConnection.commit) -> None:
        """`commit`: how a transaction commits (a test stages a lost answer there)."""
        self._engine = engine
        self._commit = commit

    async def __call__(self, work: Callable[[Db], Awaitable[T]], /) -> T:
        return await asyncio.shield(self._write(work))

    async def _write(self, work: Callable[[Db], Awaitable[T]]) -> T:
        async with self._engine.connect() as conn:
            await conn.begin()
            db = AsyncDb(conn, prepared=False)
            result = await work(db)
            await db.before_commit()
            try:
                await self._commit(conn)
            except Exception as lost:
                raise OutcomeUnknown(f"the commit failed ({brief(lost)}); it may have committed") from lost
            return result
