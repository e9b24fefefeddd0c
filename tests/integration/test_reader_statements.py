"""What a reader of the read side sends: on SQLite a read of one statement goes without BEGIN, in the
statement's own implicit transaction (`persistence.database.ONE_STATEMENT`), while a connection used
for several statements still begins a transaction; on PostgreSQL reads are sent as before. The
answers are the same either way (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select, text

from persistence.database import make_engine
from persistence.read.catalog import CatalogReads
from persistence.tables import products


@pytest.fixture
async def catalog(database_url: str) -> AsyncIterator[CatalogReads]:
    engine = make_engine(database_url, writer=False)
    try:
        yield CatalogReads(engine)
    finally:
        await engine.dispose()


@contextmanager
def sent(reads: CatalogReads) -> Iterator[list[str]]:
    """The statements the reader's engine sends meanwhile, as their text."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.strip().split()[0].upper())

    event.listen(reads.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(reads.engine.sync_engine, "before_cursor_execute", record)


async def test_a_read_of_one_statement_begins_no_transaction_on_sqlite(catalog: CatalogReads) -> None:
    with sent(catalog) as statements:
        assert await catalog.known_skus(["NO-SUCH"]) == set()
        assert await catalog.products() == []
    # On PostgreSQL too: asyncpg begins a transaction itself, not through a statement SQLAlchemy sends.
    assert statements == ["SELECT", "SELECT"]


async def test_a_connection_for_several_statements_still_begins_a_transaction_on_sqlite(
    catalog: CatalogReads, database_url: str
) -> None:
    with sent(catalog) as statements:
        async with catalog.engine.connect() as conn:
            await conn.execute(select(products.c.sku))
            await conn.execute(text("SELECT 1"))
    began = ["BEGIN"] if database_url.startswith("sqlite") else []
    assert statements == [*began, "SELECT", "SELECT"]
