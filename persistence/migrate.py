"""Apply pending migrations to a database, on the application's own engine."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


# Processes started together on one PostgreSQL database take turns to migrate under this advisory
# lock (any fixed number, the same in every process): the first applies what is pending, the others
# wait for its commit, then find nothing left to do. SQLite needs none: BEGIN IMMEDIATE serialises.
MIGRATION_LOCK = 0x6F7264657273  # "orders"


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process for the check whether a database is at their
    head. alembic reads them afresh on every command (so again when there is something to apply),
    compiling and running each file: most of the cost of an upgrade that finds nothing to apply,
    which every start of a service runs."""
    return ScriptDirectory.from_config(alembic_config())


def _upgrade(connection: Connection) -> list[Script]:
    if connection.dialect.name == "postgresql":
        # Held until the migrating transaction ends, so a crash mid-way releases it too.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    before = MigrationContext.configure(connection).get_current_heads()
    scripts = _scripts()
    if set(before) == set(scripts.get_heads()):
        return []  # up to date; a revision this release does not know goes to alembic, which refuses it
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_heads()
    # Newest first, down to but not including what the database was at.
    applied = scripts.iterate_revisions(after, before or "base")
    return list(reversed(list(applied)))


async def upgrade(engine: AsyncEngine | Engine) -> list[Script]:
    """Apply every pending migration in one transaction; answer those applied, oldest first (empty
    when the database was up to date)."""
    if isinstance(engine, AsyncEngine):
        async with engine.begin() as conn:
            return await conn.run_sync(_upgrade)

    def run() -> list[Script]:
        with engine.begin() as conn:
            return _upgrade(conn)

    return await asyncio.to_thread(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, None before the first migration."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
