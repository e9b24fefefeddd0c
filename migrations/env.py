"""Alembic environment: runs on a connection the application hands over, or on its own engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from persistence.database import default_database_url, make_engine
from persistence.tables import metadata

config = context.config
# `alembic -x url=...` points alembic's own commands (check, revision --autogenerate) at a database.
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_own_engine() -> None:
    engine = make_engine(url or default_database_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:
    asyncio.run(_run_on_own_engine())
