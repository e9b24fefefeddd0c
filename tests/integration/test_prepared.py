"""Prepared statements on SQLite (persistence/prepared.py) read and write exactly what the same
statements do through SQLAlchemy: the same stored text for times and JSON, the same rows back, the
same row counts and the same exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError

from persistence.connection import BlockingDb, run_blocking
from persistence.database import make_writer_engine
from persistence.migrate import upgrade
from persistence.prepared import Prepared
from persistence.tables import UtcDateTime, journal, saga_timeline

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


@given(st.datetimes(timezones=st.timezones()))
def test_a_time_is_stored_on_sqlite_as_sqlalchemy_s_datetime_stores_it(moment: datetime) -> None:
    dialect = sqlite.pysqlite.dialect()
    utc = moment.astimezone(UTC)
    plain = DateTime().dialect_impl(dialect).bind_processor(dialect)
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert plain is not None and ours is not None
    assert ours(moment) == plain(utc.replace(tzinfo=None))
