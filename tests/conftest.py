"""Databases for the tests: SQLite always, PostgreSQL when ORDERSAGA_TEST_POSTGRES_URL names a server.

Each run creates a PostgreSQL database of its own and drops it at the end, so runs never see each
other's leftovers; each test starts from empty, migrated tables on either database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.tables import metadata

POSTGRES_ENV = "ORDERSAGA_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "ORDERSAGA_REQUIRE_POSTGRES"
BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run database set-up on an event loop of its own, apart from the tests' loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _execute(url: str, statement: str, **options: Any) -> None:
    engine = make_engine(url, **options)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        message = (
            f"PostgreSQL tests need {POSTGRES_ENV}, a server URL such as "
            "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        )
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(message)
        pytest.skip(message)
    name = f"ordersaga_test_{uuid.uuid4().hex[:12]}"
    run_apart(_execute(admin_url, f'CREATE DATABASE "{name}"', isolation_level="AUTOCOMMIT"))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        run_apart(_migrate(url))
        yield url
    finally:
        run_apart(
            _execute(
                admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', isolation_level="AUTOCOMMIT"
            )
        )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated (or, on SQLite, brand new) database with empty tables, on each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    url: str = request.getfixturevalue("postgres_url")
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name != "alembic_version")
    run_apart(_execute(url, f"TRUNCATE {tables} CASCADE"))
    return url
