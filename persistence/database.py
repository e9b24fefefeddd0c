"""Engines for the embedded SQLite default and for PostgreSQL, with the same code above them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy import exc as sa_errors
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_DATABASE_FILE = "ordersaga.db"

# On PostgreSQL a writer waits at most this long for a lock, then fails the statement with
# lock_not_available (55P03). A commit lane's batch never waits for a stock row (it takes them with
# NOWAIT; persistence/write/stock_locks.py): what it may still wait for is another writer's key in
# the journal or a row an intervention shares, which the other commit soon releases. The one writer
# a process has for a held SKU waits for the row up to this long at a time, and again after that,
# so no lane stalls behind a lock taken outside the service. It is longer than PostgreSQL's default
# deadlock_timeout (1 s), so a true cycle (orders of several lines can make one) is reported as a
# deadlock.
LOCK_CONFLICTS = frozenset({"55P03", "40P01"})  # lock_not_available, deadlock_detected
WRITER_LOCK_TIMEOUT_MS = 2000
# What other transactions did to this one, which rolled it back whole: it may succeed when run again.
CONTENTION = LOCK_CONFLICTS | {"40001"}  # and serialization_failure
# SQLSTATE classes (PostgreSQL's manual, appendix A) that say the server is full or going away, not
# that the work is wrong: 08 connection exception; 53 insufficient resources (too many connections,
# out of memory, disk full); 57 operator intervention (a statement timeout or a cancel, a server
# shutting down or still starting). asyncpg's errors of these classes reach SQLAlchemy as a plain
# DBAPIError, not an OperationalError, so they are named here. Not among them: 08P01,
# protocol_violation (a client and server that misunderstand each other are a fault to report);
# 08007, transaction_resolution_unknown (an unknown outcome, never "nothing was done"); 53400,
# configuration_limit_exceeded (a setting the work exceeds, such as temp_file_limit, fails the same
# way each time it is sent).
UNAVAILABLE_CLASSES = frozenset({"08", "53", "57"})
NOT_UNAVAILABLE = frozenset({"08P01", "08007", "53400"})


def sqlstate(error: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error (None for any other error, and on SQLite)."""
    if not isinstance(error, sa_errors.DBAPIError):
        return None
    return getattr(error.orig, "sqlstate", None)


def brief(error: BaseException) -> str:
    """`error`'s class, with PostgreSQL's SQLSTATE when it has one ("DBAPIError 53300"): for a log
    line that says why without a traceback, and without the message, which may quote the data."""
    state = sqlstate(error)
    return type(error).__name__ if state is None else f"{type(error).__name__} {state}"


def is_contention(error: BaseException) -> bool:
    """Whether `error` is a lock wait past lock_timeout, a deadlock or a serialization failure: the
    transaction was rolled back because of others, not because of what it says."""
    return sqlstate(error) in CONTENTION


def is_key_clash(error: sa_errors.IntegrityError, table: Table) -> bool:
    """Whether `error` is a second row for a key of `table`'s primary key, and no other constraint.
    PostgreSQL names the constraint (pk_<table>, the metadata's naming convention); SQLite names the
    key's columns."""
    driver_error = error.orig.__cause__ if error.orig is not None else None
    constraint = getattr(driver_error, "constraint_name", None)
    if constraint is not None:
        return bool(constraint == f"pk_{table.name}")
    columns = ", ".join(f"{table.name}.{column.name}" for column in table.primary_key.columns)
    return str(error.orig) == f"UNIQUE constraint failed: {columns}"


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the database is busy or away rather than that the statement is wrong, so
    the same work may succeed later: no connection free within the pool's timeout, a connection lost
    or refused (PostgreSQL at its connection limit included), a lock or statement timeout, a
    deadlock, a server out of resources or shutting down, SQLite's "database is locked".
    (A connection lost while committing is not among them: the runner reports that as
    domain.ports.OutcomeUnknown.)"""
    state = sqlstate(error)
    if state is not None and (
        state in CONTENTION or (state[:2] in UNAVAILABLE_CLASSES and state not in NOT_UNAVAILABLE)
    ):
        return True
    if isinstance(error, sa_errors.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(
        error, sa_errors.TimeoutError | sa_errors.OperationalError | sa_errors.InterfaceError | OSError
    )


def default_database_url(directory: Path | None = None) -> str:
    return f"sqlite+aiosqlite:///{(directory or Path.cwd()) / DEFAULT_DATABASE_FILE}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(
    url: str, *, writer: bool = True, read_lock_timeout_ms: int | None = None, **options: Any
) -> AsyncEngine:
    """An async engine for `url`. On SQLite, `writer` engines take the write lock when a transaction
    begins (BEGIN IMMEDIATE), so a transaction never fails half-way on an upgrade to writing; readers
    begin deferred and, under WAL, never wait for the writer. On PostgreSQL, `writer` engines wait for
    locks no longer than WRITER_LOCK_TIMEOUT_MS, readers no longer than `read_lock_timeout_ms` (as
    long as the server lets them when None). Reads take no row locks; they wait only behind a lock on
    a whole table that excludes readers (LOCK TABLE, or DDL such as a migration's ALTER TABLE)."""
    if not is_sqlite(url):
        options.setdefault("pool_size", 10)
        options.setdefault("max_overflow", 20)
        lock_timeout_ms = WRITER_LOCK_TIMEOUT_MS if writer else read_lock_timeout_ms
        if lock_timeout_ms is not None:
            options.setdefault("connect_args", {"server_settings": {"lock_timeout": str(lock_timeout_ms)}})
        engine = create_async_engine(url, **options)
        event.listen(engine.sync_engine.pool, "checkout", _refuse_closed)
        return engine
    # Each SQLite connection of the async driver is a thread of its own: a small fixed pool, which
    # requests wait for, costs less than threads started and stopped for every burst.
    options.setdefault("pool_size", 4)
    options.setdefault("max_overflow", 0)
    engine = create_async_engine(url, **options)
    _configure_sqlite(engine.sync_engine, writer)
    return engine


def make_writer_engine(url: str) -> AsyncEngine | Engine:
    """The engine the transaction runner writes with: on SQLite a blocking one (sqlite3), used from
    the writer's own thread; elsewhere the async one."""
    if not is_sqlite(url):
        return make_engine(url)
    return make_blocking_engine(url, writer=True)


def make_blocking_engine(url: str, *, writer: bool, **options: Any) -> Engine:
    """A blocking engine (sqlite3) for the SQLite database of `url`, an async engine's URL, set up
    as `make_engine` sets up an async one; its connections may be used from any thread, one at a
    time. `options` go to SQLAlchemy's `create_engine` (a pool's size and time-out, say)."""
    blocking_url = make_url(url).set(drivername="sqlite+pysqlite")
    engine = create_engine(blocking_url, connect_args={"check_same_thread": False}, **options)
    _configure_sqlite(engine, writer)
    return engine


# An execution option for a reader's connection that runs a single statement. On SQLite it runs
# without BEGIN, in the implicit transaction SQLite gives every statement, which is just as
# consistent for one statement: the BEGIN cost three of a read's eight hand-offs to the async
# driver's thread, 5-20% of its CPU (docs/performance.md, lever 30). A writer's connection ignores
# it (each of its statements would commit on its own), and so does PostgreSQL.
ONE_STATEMENT = "ordersaga_one_statement"


def _configure_sqlite(engine: Engine, writer: bool) -> None:
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
        # BEGIN IMMEDIATE and savepoints behave as written.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        if writer or not connection.get_execution_options().get(ONE_STATEMENT):
            connection.exec_driver_sql(begin)


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Has the pool replace a connection whose server end is gone (a backend terminated, a server
    restarted) as it is taken, so that no transaction meets it. asyncpg knows without a round trip:
    the server's closing arrived on the socket while the connection sat idle. SQLAlchemy's
    `pool_pre_ping` would ask the server instead, a round trip before every transaction. A
    connection that dies in the instant between this check and its use fails its one request as
    a transient error (SERVICE_UNAVAILABLE for a client), as it would after a ping."""
    if dbapi_connection.driver_connection.is_closed():
        raise sa_errors.DisconnectionError("the server closed this connection")
