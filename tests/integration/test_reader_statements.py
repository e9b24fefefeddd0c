"""What a reader of the read side sends: on SQLite a read of one statement goes to the blocking twin
of the read engine (persistence/read/reader.py), without BEGIN, in the statement's own implicit
transaction (`persistence.database.ONE_STATEMENT`), while a connection used for several statements,
and a writer's whatever its options, still begins a transaction; on PostgreSQL statements are sent as
before (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.database import ONE_STATEMENT, make_engine
from persistence.read.catalog import CatalogReads
from persistence.read.reader import ReadEngine
from persistence.tables import products
from tests.integration.support import read_engine, start_service


@pytest.fixture
async def reads(database_url: str) -> AsyncIterator[ReadEngine]:
    async with read_engine(database_url) as reads:
        yield reads


@pytest.fixture
def catalog(reads: ReadEngine) -> CatalogReads:
    return CatalogReads(reads)


@contextmanager
def sent(engine: AsyncEngine | Engine) -> Iterator[list[str]]:
    """The statements `engine` sends meanwhile, each as its first word."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.strip().split()[0].upper())

    engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_a_read_of_one_statement_begins_no_transaction_on_sqlite(
    reads: ReadEngine, catalog: CatalogReads, database_url: str
) -> None:
    assert (reads.blocking is not None) == database_url.startswith("sqlite")
    with sent(catalog.engine) as through_async, sent(reads.blocking or catalog.engine) as statements:
        assert await catalog.known_skus(["NO-SUCH"]) == set()
        assert await catalog.products() == []
    # On PostgreSQL too: asyncpg begins a transaction itself, not through a statement SQLAlchemy sends.
    assert statements == ["SELECT", "SELECT"]
    if reads.blocking is not None:  # on SQLite, none through the async driver
        assert through_async == []


async def test_a_connection_for_several_statements_still_begins_a_transaction_on_sqlite(
    catalog: CatalogReads, database_url: str
) -> None:
    with sent(catalog.engine) as statements:
        async with catalog.engine.connect() as conn:
            await conn.execute(select(products.c.sku))
            await conn.execute(text("SELECT 1"))
    began = ["BEGIN"] if database_url.startswith("sqlite") else []
    assert statements == [*began, "SELECT", "SELECT"]


async def test_a_writer_begins_its_transaction_whatever_the_option(database_url: str) -> None:
    """A writer's statements on a connection with the option would each commit on their own."""
    engine = make_engine(database_url)
    try:
        with sent(engine) as statements:
            async with engine.connect() as conn:
                await conn.execution_options(**{ONE_STATEMENT: True})
                await conn.execute(select(products.c.sku))
    finally:
        await engine.dispose()
    began = ["BEGIN"] if database_url.startswith("sqlite") else []  # BEGIN IMMEDIATE
    assert statements == [*began, "SELECT"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_service_reads_postgresql_in_one_round_trip_a_statement(database_url: str) -> None:
    """No BEGIN before a read and no ROLLBACK after it, as asyncpg logs what it sends outside a
    prepared statement: a read that began a transaction, on the same connections, logs both."""
    svc = await start_service(database_url)
    try:
        engine = svc.read_engine.engine
        sent: list[str] = []

        def log(query: Any) -> None:
            sent.append(query.query.split()[0].rstrip(";").upper())

        @event.listens_for(engine.sync_engine, "connect")
        def logged(_dbapi_connection: Any, record: Any) -> None:
            record.driver_connection.add_query_logger(log)

        await engine.dispose()  # the connections made from here on are logged
        assert await svc.catalog.known_skus(["NO-SUCH"]) == set()
        assert await svc.read.saga("no-such-saga") is None
        assert sent == []
        async with engine.execution_options(isolation_level="READ COMMITTED").connect() as conn:
            await conn.execute(text("SELECT 1"))
        assert sent == ["BEGIN", "ROLLBACK"]
    finally:
        await svc.stop()
