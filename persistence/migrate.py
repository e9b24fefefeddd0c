"""Apply pending migrations to a database, on the application's own engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
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


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the migrating transaction ends, so a crash mid-way releases it too.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine | Engine) -> None:
    if isinstance(engine, AsyncEngine):
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
        return

    def run() -> None:
        with engine.begin() as conn:
            _upgrade(conn)

    await asyncio.to_thread(run)
