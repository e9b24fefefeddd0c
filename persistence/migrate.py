"""Apply pending migrations to a database, on the application's own engine.

alembic is imported only when a migration runs: every start of a service checks whether its database
is at head, and importing alembic added about a tenth of a second of CPU to each."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

MIGRATIONS = Path(migrations.__file__).parent
# A migration script's `revision = "0002"` and `down_revision = "0001"` (None for the first, a tuple
# for a merge), as alembic writes them.
_REVISION_LINE = re.compile(r"^(revision|down_revision)(?:: [^=]+)? = (.+)$", re.MULTILINE)


class MigrationError(Exception):
    """alembic refused to migrate the database (its CommandError, whose message this carries): the
    database is at a revision this release does not know, say."""


def alembic_config() -> Config:
    from alembic.config import Config  # lazily, as the module's docstring says

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


# Processes started together on one PostgreSQL database take turns to migrate under this advisory
# lock (any fixed number, the same in every process): the first applies what is pending, the others
# wait for its commit, then find nothing left to do. SQLite needs none: BEGIN IMMEDIATE serialises.
MIGRATION_LOCK = 0x6F7264657273  # "orders"


@functools.cache
def script_heads() -> frozenset[str]:
    """The revisions no migration script revises: what alembic's `ScriptDirectory.get_heads` answers
    (a test holds the two equal), read from the scripts' revision lines without alembic, which would
    compile and run every script."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        lines = {name: ast.literal_eval(value) for name, value in _REVISION_LINE.findall(script.read_text())}
        revisions.add(lines["revision"])
        down = lines["down_revision"]
        revised.update([down] if isinstance(down, str) else down or ())
    return frozenset(revisions - revised)


def _current_heads(connection: Connection) -> tuple[str, ...]:
    """The revisions the database is at, as alembic keeps them: none before the first migration."""
    if not inspect(connection).has_table("alembic_version"):
        return ()
    return tuple(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    from alembic.util import CommandError  # lazily, as the module's docstring says

    try:
        yield
    except CommandError as refused:
        raise MigrationError(str(refused)) from refused


@functools.cache
def _scripts() -> ScriptDirectory:
    """The migration scripts, read once per process."""
    from alembic.script import ScriptDirectory  # lazily, as the module's docstring says

    return ScriptDirectory.from_config(alembic_config())


def _upgrade(connection: Connection) -> list[Script]:
    if connection.dialect.name == "postgresql":
        # Held until the migrating transaction ends, so a crash mid-way releases it too.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    before = _current_heads(connection)
    if set(before) == script_heads():
        return []  # up to date; a revision this release does not know goes to alembic, which refuses it
    from alembic import command  # lazily, as the module's docstring says

    config = alembic_config()
    config.attributes["connection"] = connection
    with _refusals():
        command.upgrade(config, "head")
        # Newest first, down to but not including what the database was at.
        applied = _scripts().iterate_revisions(_current_heads(connection), before or "base")
        return list(reversed(list(applied)))


async def upgrade(engine: AsyncEngine | Engine) -> list[Script]:
    """Apply every pending migration in one transaction; answer those applied, oldest first (empty
    when the database was up to date). Raises MigrationError when alembic refuses to."""
    if isinstance(engine, AsyncEngine):
        async with engine.begin() as conn:
            return await conn.run_sync(_upgrade)

    def run() -> list[Script]:
        with engine.begin() as conn:
            return _upgrade(conn)

    return await asyncio.to_thread(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, None before the first migration. Raises MigrationError when
    it is at several."""
    from alembic.runtime.migration import MigrationContext  # lazily, as the module's docstring says

    async with engine.connect() as conn:
        with _refusals():
            return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
