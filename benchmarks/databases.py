"""Fresh databases for one benchmark cell: a SQLite file in the cell's directory, or a PostgreSQL
database made on the server the run was given and dropped afterwards.

    with fresh_database("postgresql://postgres@127.0.0.1:5432/postgres", workdir, "engine") as db:
        db.async_url   # postgresql+asyncpg://postgres@127.0.0.1:5432/ordersaga_bench_engine_1a2b3c
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

SQLITE = "sqlite"


@dataclass(frozen=True)
class Database:
    kind: str  # "sqlite" or "postgresql"
    location: str  # the file, or the server's URL with the database's name

    @property
    def async_url(self) -> str:
        """For ordersaga (aiosqlite or asyncpg)."""
        return self._url("aiosqlite" if self.kind == SQLITE else "asyncpg")

    @property
    def blocking_url(self) -> str:
        """For a synchronous engine (pysqlite or psycopg), as DBOS uses."""
        return self._url("pysqlite" if self.kind == SQLITE else "psycopg")

    def _url(self, driver: str) -> str:
        if self.kind == SQLITE:
            return f"sqlite+{driver}:///{self.location}"
        return make_url(self.location).set(drivername=f"postgresql+{driver}").render_as_string(False)


@contextlib.contextmanager
def fresh_database(server: str | None, workdir: Path, name: str) -> Iterator[Database]:
    """A new empty database called after `name`: a file under `workdir` when `server` is None, else a
    database on that PostgreSQL server, dropped on leaving."""
    if server is None:
        yield Database(SQLITE, str(workdir / f"{name}.db"))
        return
    database = f"ordersaga_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        try:
            yield Database("postgresql", make_url(server).set(database=database).render_as_string(False))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()
