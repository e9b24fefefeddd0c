"""Prepared statements (persistence/prepared.py), on sqlite3 and on asyncpg, read and write exactly
what the same statements do through SQLAlchemy: the same stored text for times and JSON, the same
rows back, the same row counts and the same exceptions (on PostgreSQL, with the constraint's name and
the SQLSTATE the retries read, and a lost connection invalidated). Every hot statement the service
prepares is accepted by the migrated schema of either database."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError, ProgrammingError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

import persistence.write
from persistence.connection import AsyncDb, BlockingDb, Db, run_blocking
from persistence.database import (
    is_contention,
    is_key_clash,
    is_sqlite,
    is_transient,
    make_engine,
    make_writer_engine,
    sqlstate,
)
from persistence.metrics import StoreMetrics
from persistence.migrate import upgrade
from persistence.prepared import Prepared
from persistence.tables import UtcDateTime, journal, saga_timeline
from persistence.write.group_commit import GroupCommitRunner
from tests.integration.support import through_sqlalchemy

INSERT = Prepared(insert(journal))
READ = Prepared(
    select(journal.c.sequence, journal.c.type, journal.c.data, journal.c.recorded_at)
    .where(journal.c.saga_id == bindparam("saga"))
    .order_by(journal.c.sequence)
)
OF_TYPES = Prepared(
    select(journal.c.sequence)
    .where(journal.c.saga_id == bindparam("saga"), journal.c.type.in_(bindparam("types", expanding=True)))
    .order_by(journal.c.sequence)
)
# `version + 1` binds a value of the statement's own, which no caller passes.
BUMP = Prepared(
    update(journal)
    .where(journal.c.saga_id == bindparam("saga"), journal.c.sequence == bindparam("at"))
    .values(version=journal.c.version + 1)
)
AT = datetime(2026, 11, 30, 4, 5, 6, 789, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def rows(saga: str) -> list[dict[str, Any]]:
    return [
        {
            "saga_id": saga,
            "sequence": n,
            "type": kind,
            "version": 1,
            "data": {"reason": "zu spät ✓", "picks": [{"sku": "TEA", "quantity": n}], "none": None},
            "recorded_at": AT + timedelta(microseconds=n),
        }
        for n, kind in enumerate(("SagaStarted", "StepStarted", "StepSucceeded"), start=1)
    ]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    writer = make_writer_engine(url)
    assert isinstance(writer, Engine)
    asyncio.run(upgrade(writer))
    yield writer
    writer.dispose()


def both(engine: Engine, statement: Prepared, parameters: Any) -> tuple[Any, Any]:
    """The statement run prepared, then through SQLAlchemy, in one transaction rolled back after."""
    with engine.connect() as conn, conn.begin() as transaction:
        db = BlockingDb(conn)
        prepared = run_blocking(db.execute(statement, parameters))
        plain = run_blocking(db.execute(statement.statement, parameters))
        transaction.rollback()
    return prepared, plain


def test_rows_written_prepared_are_stored_as_sqlalchemy_stores_them(engine: Engine) -> None:
    with engine.begin() as conn:
        db = BlockingDb(conn)
        run_blocking(db.execute(INSERT, rows("prepared")))
        run_blocking(db.execute(INSERT.statement, rows("plain")))
        stored = {
            saga: conn.execute(
                text("SELECT sequence, type, version, data, recorded_at FROM journal WHERE saga_id = :s"),
                {"s": saga},
            ).all()
            for saga in ("prepared", "plain")
        }
    assert stored["prepared"] == stored["plain"]
    assert stored["prepared"][0].recorded_at == "2026-11-29 22:35:06.000790"  # UTC, as text


def test_rows_read_prepared_are_named_and_converted_as_sqlalchemy_reads_them(engine: Engine) -> None:
    with engine.begin() as conn:
        run_blocking(BlockingDb(conn).execute(INSERT, rows("s-1")))
    prepared, plain = both(engine, READ, {"saga": "s-1"})

    read = list(prepared)
    assert [tuple(r) for r in read] == [tuple(r) for r in plain]
    assert read[0].recorded_at == AT + timedelta(microseconds=1) and read[0].recorded_at.tzinfo is UTC
    assert read[2].data == rows("s-1")[2]["data"] and read[2].type == "StepSucceeded"
    assert prepared.first() == read[0]
    assert both(engine, READ, {"saga": "none"})[0].first() is None


@pytest.mark.parametrize(
    "types", [["StepStarted"], ["SagaStarted", "StepSucceeded"], ["A", "B", "SagaStarted"]]
)
def test_an_expanding_list_of_any_length_matches_as_in_sqlalchemy(engine: Engine, types: list[str]) -> None:
    with engine.begin() as conn:
        run_blocking(BlockingDb(conn).execute(INSERT, rows("s-1")))
    prepared, plain = both(engine, OF_TYPES, {"saga": "s-1", "types": types})
    assert [tuple(r) for r in prepared] == [tuple(r) for r in plain] != []


def test_an_empty_expanding_list_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least one value"):
        both(engine, OF_TYPES, {"saga": "s-1", "types": []})


def test_many_rows_take_the_statement_s_own_values_and_count_every_change(engine: Engine) -> None:
    with engine.begin() as conn:
        db = BlockingDb(conn)
        run_blocking(db.execute(INSERT, rows("s-1")))
        changed = run_blocking(db.execute(BUMP, [{"saga": "s-1", "at": n} for n in (1, 3, 4)]))
        versions = conn.execute(text("SELECT version FROM journal ORDER BY sequence")).scalars().all()
    assert changed.rowcount == 2  # sequence 4 does not exist
    assert versions == [2, 1, 2]


def test_a_driver_error_is_sqlalchemy_s_exception(engine: Engine) -> None:
    with engine.begin() as conn:
        db = BlockingDb(conn)
        run_blocking(db.execute(INSERT, rows("s-1")))
        with pytest.raises(IntegrityError):
            run_blocking(db.execute(INSERT, rows("s-1")[:1]))


def test_a_parameter_left_out_is_refused_as_sqlalchemy_refuses_it(engine: Engine) -> None:
    with engine.begin() as conn:
        db = BlockingDb(conn)
        run_blocking(db.execute(INSERT, rows("s-1")))
        with pytest.raises(StatementError, match="required for bind parameter 'at'"):
            run_blocking(db.execute(BUMP.statement, {"saga": "s-1"}))
        # Not `sequence = NULL`, which would match nothing and look like a lost race.
        with pytest.raises(InvalidRequestError, match="required for bind parameter 'at'"):
            run_blocking(db.execute(BUMP, {"saga": "s-1"}))


def test_a_statement_written_for_another_database_is_refused(engine: Engine) -> None:
    for_postgresql = Prepared(
        select(journal.c.sequence).where(journal.c.saga_id == bindparam("saga")), "postgresql"
    )
    with engine.connect() as conn, pytest.raises(ValueError, match="written for postgresql"):
        run_blocking(BlockingDb(conn).execute(for_postgresql, {"saga": "s-1"}))


def test_a_list_written_into_the_statement_matches_as_in_sqlalchemy(engine: Engine) -> None:
    with engine.begin() as conn:
        run_blocking(BlockingDb(conn).execute(INSERT, rows("s-1")))
    literal = Prepared(select(journal.c.sequence).where(journal.c.type.in_(["SagaStarted", "StepSucceeded"])))
    prepared, plain = both(engine, literal, None)
    assert [tuple(r) for r in prepared] == [tuple(r) for r in plain] == [(1,), (3,)]


_DEFAULTED = Table(
    "journal", MetaData(), Column("saga_id", String, primary_key=True), Column("version", Integer, default=1)
)


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        (insert(_DEFAULTED), {"saga_id": "s-1"}),  # the version would be NULL, not 1
        (update(journal).values(version=2).returning(journal.c.version), None),  # no rows would come back
        (select(journal.c.saga_id, saga_timeline.c.saga_id), None),  # one name for two columns
    ],
)
def test_what_the_driver_path_cannot_do_as_sqlalchemy_does_is_refused(
    engine: Engine, statement: Any, parameters: Any
) -> None:
    with pytest.raises(ValueError):
        both(engine, Prepared(statement), parameters)


_SQLITE = sqlite.pysqlite.dialect()
# One processor for every example, as a dialect keeps one: the text it made last, kept for the same
# time given again, must never be another time's.
_TIME_TEXT = UtcDateTime().dialect_impl(_SQLITE).bind_processor(_SQLITE)


@given(st.datetimes(timezones=st.timezones()))
def test_a_time_is_stored_on_sqlite_as_sqlalchemy_s_datetime_stores_it(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    plain = DateTime().dialect_impl(_SQLITE).bind_processor(_SQLITE)
    assert plain is not None and _TIME_TEXT is not None
    assert _TIME_TEXT(moment) == _TIME_TEXT(moment) == plain(utc.replace(tzinfo=None))
    assert _TIME_TEXT(utc) == plain(utc.replace(tzinfo=None))


# PostgreSQL: the same statements on asyncpg, run beside SQLAlchemy in one transaction.


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    writer = make_engine(postgres_url)
    async with writer.begin() as conn:
        await conn.execute(delete(journal))
    yield writer
    await writer.dispose()


async def both_async(engine: AsyncEngine, statement: Prepared, parameters: Any) -> tuple[Any, Any]:
    """The statement run on asyncpg (checked: SQLAlchemy executes nothing), then through SQLAlchemy,
    in one transaction rolled back after."""
    async with engine.connect() as conn:
        await conn.begin()
        db = AsyncDb(conn)
        with through_sqlalchemy() as executed:
            prepared = await db.execute(statement, parameters)
        assert executed == []
        plain = await db.execute(statement.statement, parameters)
        await conn.rollback()
    return prepared, plain


async def test_a_statement_cancelled_on_asyncpg_discards_its_connection(pg: AsyncEngine) -> None:
    sleeping = Prepared(select(func.pg_sleep(bindparam("seconds")).label("slept")))
    async with pg.connect() as conn:
        await conn.begin()
        db = AsyncDb(conn)
        with through_sqlalchemy() as executed:
            running = asyncio.ensure_future(db.execute(sleeping, {"seconds": 5}))
            await asyncio.sleep(0.2)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
        assert [s for s in executed if "pg_sleep" in s] == []  # it ran on asyncpg
        assert conn.invalidated  # not handed to the next transaction mid-statement


async def test_rows_written_on_asyncpg_are_stored_as_sqlalchemy_stores_them(pg: AsyncEngine) -> None:
    async with pg.begin() as conn:
        db = AsyncDb(conn)
        await db.execute(INSERT, rows("prepared"))
        await db.execute(INSERT.statement, rows("plain"))
        await db.execute(INSERT, rows("one")[0])
        stored = {
            saga: (
                await conn.execute(
                    text(
                        "SELECT sequence, type, version, data::text, recorded_at FROM journal"
                        " WHERE saga_id = :s ORDER BY sequence"
                    ),
                    {"s": saga},
                )
            ).all()
            for saga in ("prepared", "plain", "one")
        }
    assert stored["prepared"] == stored["plain"] != []
    assert stored["one"] == stored["plain"][:1]
    assert stored["prepared"][0].recorded_at == AT + timedelta(microseconds=1)


async def test_rows_read_on_asyncpg_are_named_and_converted_as_sqlalchemy_reads_them(pg: AsyncEngine) -> None:
    async with pg.begin() as conn:
        await AsyncDb(conn).execute(INSERT, rows("s-1"))
    prepared, plain = await both_async(pg, READ, {"saga": "s-1"})

    read = list(prepared)
    assert [tuple(r) for r in read] == [tuple(r) for r in plain]
    assert read[0].recorded_at == AT + timedelta(microseconds=1) and read[
        0
    ].recorded_at.utcoffset() == timedelta(0)
    assert read[2].data == rows("s-1")[2]["data"] and read[2].type == "StepSucceeded"
    assert prepared.first() == read[0]
    assert (await both_async(pg, READ, {"saga": "none"}))[0].first() is None


async def test_sql_written_out_on_asyncpg_reads_its_declared_columns_as_sqlalchemy_does(
    pg: AsyncEngine,
) -> None:
    async with pg.begin() as conn:
        await AsyncDb(conn).execute(INSERT, rows("s-1"))
    written = Prepared(
        text(
            "SELECT sequence, recorded_at FROM journal"
            " WHERE saga_id = :saga AND sequence >= :at ORDER BY sequence"
        ).columns(sequence=Integer(), recorded_at=UtcDateTime())
    )
    prepared, plain = await both_async(pg, written, {"saga": "s-1", "at": 2})

    read = list(prepared)
    assert [tuple(r) for r in read] == [tuple(r) for r in plain] != []
    assert read[0].sequence == 2 and read[0].recorded_at == AT + timedelta(microseconds=2)


@pytest.mark.parametrize(
    "types", [["StepStarted"], ["SagaStarted", "StepSucceeded"], ["A", "B", "SagaStarted"]]
)
async def test_an_expanding_list_on_asyncpg_matches_as_in_sqlalchemy(
    pg: AsyncEngine, types: list[str]
) -> None:
    async with pg.begin() as conn:
        await AsyncDb(conn).execute(INSERT, rows("s-1"))
    # A list numbers the parameters after it anew: the saga's comes after the types here.
    after = Prepared(
        select(journal.c.sequence)
        .where(journal.c.type.in_(bindparam("types", expanding=True)), journal.c.saga_id == bindparam("saga"))
        .order_by(journal.c.sequence)
    )
    for statement in (OF_TYPES, after):
        prepared, plain = await both_async(pg, statement, {"saga": "s-1", "types": types})
        assert [tuple(r) for r in prepared] == [tuple(r) for r in plain] != []


async def test_writes_on_a_connection_not_yet_begun_are_committed_by_sqlalchemy_s_commit(
    pg: AsyncEngine,
) -> None:
    async with pg.connect() as conn:
        db = AsyncDb(conn)
        with through_sqlalchemy() as executed:
            await db.execute(INSERT, rows("s-1"))  # through SQLAlchemy, which begins
            await db.execute(INSERT, rows("s-2"))  # in that transaction: on asyncpg
        await conn.commit()
    assert len([s for s in executed if s.startswith("INSERT INTO journal")]) == 1
    async with pg.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM journal"))).scalar()
    assert stored == 6


async def test_a_batch_on_asyncpg_writes_every_row_with_the_statement_s_own_values(pg: AsyncEngine) -> None:
    async with pg.begin() as conn:
        db = AsyncDb(conn)
        await db.execute(INSERT, rows("s-1"))
        batch = await db.execute(BUMP, [{"saga": "s-1", "at": n} for n in (1, 3, 4)])
        one = await db.execute(BUMP, {"saga": "s-1", "at": 2})
        versions = (await conn.execute(text("SELECT version FROM journal ORDER BY sequence"))).scalars().all()
    assert batch.rowcount == -1  # as SQLAlchemy's on asyncpg: no count for an executemany
    assert one.rowcount == 1
    assert versions == [2, 2, 2]


async def test_a_key_clash_on_asyncpg_is_sqlalchemy_s_integrity_error_naming_the_key(pg: AsyncEngine) -> None:
    async with pg.connect() as conn:
        await conn.begin()
        db = AsyncDb(conn)
        await db.execute(INSERT, rows("s-1"))
        for clash in (rows("s-1")[:1], rows("s-1")[0]):  # a batch, and one row
            savepoint = await db.begin_nested()
            with pytest.raises(IntegrityError) as raised:
                await db.execute(INSERT, clash)
            await savepoint.rollback()
            assert is_key_clash(raised.value, journal)
            assert sqlstate(raised.value) == "23505"
        await conn.rollback()


async def test_a_held_row_on_asyncpg_fails_with_the_sqlstate_the_retries_read(pg: AsyncEngine) -> None:
    nowait = Prepared(
        select(journal.c.sequence).where(journal.c.saga_id == bindparam("saga")).with_for_update(nowait=True)
    )
    async with pg.begin() as conn:
        await AsyncDb(conn).execute(INSERT, rows("s-1"))
    async with pg.connect() as holder, pg.connect() as other:
        await holder.begin()
        await holder.execute(text("SELECT 1 FROM journal WHERE saga_id = 's-1' FOR UPDATE"))
        await other.begin()
        with pytest.raises(DBAPIError) as raised:
            await AsyncDb(other).execute(nowait, {"saga": "s-1"})
        assert sqlstate(raised.value) == "55P03" and is_contention(raised.value)
        assert not raised.value.connection_invalidated
        await other.rollback()
        await holder.rollback()


async def test_a_lost_connection_on_asyncpg_is_invalidated_as_sqlalchemy_does(pg: AsyncEngine) -> None:
    async with pg.connect() as conn, pg.connect() as killer:
        await conn.begin()
        db = AsyncDb(conn)
        await db.execute(READ, {"saga": "s-1"})
        backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await killer.commit()
        with pytest.raises(DBAPIError) as raised:
            for _ in range(50):  # until the connection has read the server's goodbye
                await db.execute(READ, {"saga": "s-1"})
                await asyncio.sleep(0.01)
        assert raised.value.connection_invalidated and is_transient(raised.value)
        assert conn.invalidated


def _hot_statements() -> list[tuple[str, Prepared]]:
    """Every Prepared statement the service's write side keeps at module level, by name."""
    found: list[tuple[str, Prepared]] = []
    for info in pkgutil.iter_modules(persistence.write.__path__):
        module = importlib.import_module(f"persistence.write.{info.name}")
        for name, value in vars(module).items():
            values = value.values() if isinstance(value, dict) else [value]
            found += [(f"{info.name}.{name}", v) for v in values if isinstance(v, Prepared)]
    return found


def _every_column(statement: Prepared) -> tuple[str, ...]:
    """The keys an INSERT of values is given (each column of its table), or the statement's own bind
    keys (an INSERT from a SELECT's too)."""
    sql = statement.statement
    if isinstance(sql, Insert) and sql.select is None:
        return tuple(column.key for column in sql.table.columns)
    return tuple(bind.key for bind in sql.compile().binds.values() if bind.required)


async def test_every_hot_statement_is_accepted_by_the_migrated_schema(database_url: str) -> None:
    """A column a statement names and the migrated table lacks (or a type it casts to that the column
    cannot take) fails here, on each database, before any saga meets it."""
    statements = _hot_statements()
    assert len(statements) > 20
    if is_sqlite(database_url):
        statements = [(name, s) for name, s in statements if s.dialect in (None, "sqlite")]
        writer = make_writer_engine(database_url)
        assert isinstance(writer, Engine)
        with writer.connect() as conn:
            sqlite_connection = conn.connection.driver_connection
            assert sqlite_connection is not None
            for name, statement in statements:
                sql, values = _sql_of(statement, writer.dialect)
                try:
                    sqlite_connection.execute(f"EXPLAIN {sql}", values)
                except sqlite3.Error as error:
                    pytest.fail(f"{name}: {error}")
        writer.dispose()
        return
    statements = [(name, s) for name, s in statements if s.dialect in (None, "postgresql")]
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for name, statement in statements:
            try:
                await raw.prepare(_sql_of(statement, engine.dialect)[0])
            except asyncpg.PostgresError as error:
                pytest.fail(f"{name}: {error}")
    await engine.dispose()


def _sql_of(statement: Prepared, dialect: Any) -> tuple[str, list[Any]]:
    """The statement's SQL as the driver gets it, and values for it (NULLs; each list one long)."""
    form = statement._form(dialect, _every_column(statement))
    sql, values = form.bind([{b.key: [None] if b.expanding else None for b in form.binds if b.given}])
    return sql, values[0]


async def test_a_writes_cursor_is_closed_in_the_writers_thread_when_the_write_fails(engine: Engine) -> None:
    """A failed write's error carries its transaction, and so its sqlite3 cursor, in its traceback to
    the event loop, to be freed there at any moment. sqlite3 resets the statement a cursor last ran
    when the cursor is freed, and the connection's statement cache may by then have handed that
    statement to the next batch in the writer's thread ("bad parameter or other API misuse" there).
    So the writer closes each transaction's cursor itself, before the connection goes back."""
    runner = GroupCommitRunner(engine, lambda db: None, StoreMetrics())  # type: ignore[arg-type,return-value]
    await runner.start()
    seen: list[Db] = []

    async def work(db: Db) -> None:
        seen.append(db)
        await db.execute(INSERT, rows(f"s-{len(seen)}"))
        raise _Planned

    try:
        with pytest.raises(_Planned):
            await runner.run_on_connection(work)
    finally:
        await runner.stop()
    assert seen
    for db in seen:  # the batch's transaction, then the work's own (group_commit.py runs it again alone)
        with pytest.raises(ProgrammingError, match="closed cursor"):
            await db.execute(INSERT, rows("late"))


class _Planned(Exception):
    """A write's own failure, raised after it ran a prepared statement."""
