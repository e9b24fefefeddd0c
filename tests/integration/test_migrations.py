"""Alembic owns the DDL: the migrated schema is exactly the tables the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from persistence.database import make_engine
from persistence.migrate import alembic_config, script_heads, upgrade
from persistence.tables import metadata


async def test_the_migrations_create_exactly_the_declared_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)

        def differences(conn: Connection) -> list[object]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    # A service skips alembic when its database is at these heads, so they must be alembic's own.
    assert script_heads() == set(ScriptDirectory.from_config(alembic_config()).get_heads())
