"""The databases released versions left behind (`databases/<version>/`, written by `generate.py`):
where they are, their manifests, and restoring one into a database of its own; and taking a database
down to an earlier migration, to write rows as an earlier version did."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from sqlalchemy.engine import Connection, make_url

from persistence.migrate import alembic_config

DATABASES = Path(__file__).parent / "databases"
# Each database's written form, by backend.
DUMPS = {"sqlite": "sqlite.db.gz", "postgresql": "postgresql.sql.gz"}


def releases() -> list[str]:
    """Every release whose databases are kept, oldest first."""
    versions = [path.name for path in DATABASES.iterdir() if path.is_dir()]
    return sorted(versions, key=lambda version: tuple(int(part) for part in version.split(".")))


def manifest(release: str, backend: str) -> dict[str, Any]:
    """What `load.py` placed on that release's `backend` database: every key, its caller, request,
    order, saga and outcome, and the stock received."""
    return json.loads((DATABASES / release / f"{backend}.json").read_text())  # type: ignore[no-any-return]


def dump(release: str, backend: str) -> bytes:
    return gzip.decompress((DATABASES / release / DUMPS[backend]).read_bytes())


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq (pg_dump, asyncpg) takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def database_on(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(libpq(server_url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str) -> str:
    """A new, empty PostgreSQL database `name` on `server_url`'s server; its URL."""
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    return database_on(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def restore_postgresql(release: str, url: str) -> None:
    """Run the release's plain SQL dump in the (empty) database at `url`."""
    conn = await asyncpg.connect(libpq(url))
    try:
        await conn.execute(dump(release, "postgresql").decode())
    finally:
        await conn.close()


def restore_sqlite(release: str, path: Path) -> str:
    """The release's SQLite database written to `path`; its URL."""
    path.write_bytes(dump(release, "sqlite"))
    return f"sqlite+aiosqlite:///{path}"


def downgrade(conn: Connection, revision: str) -> None:
    """Take the database on `conn` down to migration `revision` (for `AsyncConnection.run_sync`)."""
    config = alembic_config()
    config.attributes["connection"] = conn
    command.downgrade(config, revision)
