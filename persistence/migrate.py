"""Apply pending migrations to a database, on the application's own engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def _upgrade(connection: Connection) -> None:
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
