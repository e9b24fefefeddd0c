"""An upgrade keeps what a released version acknowledged. Each kept database (`databases/`, written
by that release's own code through its API: see generate.py) is restored, migrated by `ordersaga
migrate` and served by this version over HTTP: every idempotency key replays its order, and nothing
more, for the caller it belonged to, and for no one else; the sagas the release left mid-way finish;
and the books balance. On SQLite and on PostgreSQL, for every release kept."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.settings import Settings
from persistence.database import make_engine
from persistence.read.rebuild import READ_TABLES, rebuild_projections
from persistence.tables import orders, reservations
from tests.api.tokens import AUTH, Caller, bearer, served
from tests.conftest import BACKENDS
from tests.crash import preloaded
from tests.crash.audit import saga_statuses
from tests.golden.rows import jsonable
from tests.integration.support import FAST
from tests.upgrade.books import check_books
from tests.upgrade.load import OPERATOR, PLACE
from tests.upgrade.releases import (
    create_database,
    drop_database,
    manifest,
    releases,
    restore_postgresql,
    restore_sqlite,
)

STRANGER = {"subject": "customer-stranger", "roles": ["customer"]}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def postgres_server(backend: str, request: pytest.FixtureRequest) -> str | None:
    return None if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def upgraded(release: str, postgres_server: str | None, tmp_path: Path) -> AsyncIterator[str]:
    """The release's database on this backend, restored and then migrated by `ordersaga migrate`."""
    if postgres_server is None:
        url = restore_sqlite(release, tmp_path / "release.db")
        await ordersaga_migrate(url)
        yield url
        return
    name = f"ordersaga_upgrade_{uuid.uuid4().hex[:12]}"
    url = await create_database(postgres_server, name)
    try:
        await restore_postgresql(release, url)
        await ordersaga_migrate(url)
        yield url
    finally:
        await drop_database(postgres_server, name)


async def ordersaga_migrate(url: str) -> None:
    """`ordersaga migrate`, forked from a process that has imported the command (tests/crash/preloaded.py)."""
    migrate = await preloaded.start(["migrate", "--database-url", url], os.environ, Path.cwd())
    try:
        async with asyncio.timeout(60):
            output = b"".join([line async for line in migrate.stdout]).decode(errors="replace")
            assert await migrate.wait() == 0, output
    finally:
        await migrate.kill()  # one that overran its time; a no-op for one that has ended


def owners(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Whose the key is now. A release without authentication had no callers to tell apart: its key
    belongs to the order's customer, and to staff, who act for every customer."""
    if entry["caller"] is not None:
        return [entry["caller"]]
    return [{"subject": entry["request"]["customerId"], "roles": ["customer"]}, OPERATOR]


async def place(http: Any, who: dict[str, Any], key: str, request: dict[str, Any]) -> dict[str, Any]:
    answer = await Caller(http, bearer(who["subject"], *who["roles"])).data(
        PLACE, input={**request, "idempotencyKey": key}
    )
    payload: dict[str, Any] = answer["placeOrder"]
    assert not payload["userErrors"], (who, key, payload["userErrors"])
    return payload


async def placed(url: str) -> tuple[int, int]:
    """How many orders, and how many reservations, the database holds."""
    engine = make_engine(url, writer=False)
    try:
        async with engine.connect() as conn:
            count = [select(func.count()).select_from(table) for table in (orders, reservations)]
            return (await conn.scalar(count[0]) or 0, await conn.scalar(count[1]) or 0)
    finally:
        await engine.dispose()


async def all_finished(url: str, seconds: float = 30) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for _ in range(int(seconds / 0.1)):
        statuses = await saga_statuses(url)
        if set(statuses.values()) <= {"COMPLETED", "FAILED"}:
            return statuses
        await asyncio.sleep(0.1)
    raise AssertionError(f"sagas left unfinished: {statuses}")


@pytest.mark.parametrize("release", releases())
async def test_an_upgrade_keeps_every_idempotency_key_and_finishes_every_saga(
    release: str, backend: str, upgraded: str
) -> None:
    kept = manifest(release, backend)
    entries = kept["placements"]
    known = {entry["orderId"] for entry in entries}
    async with served(Settings(database_url=upgraded, auth=AUTH, policy=FAST)) as live:
        before = await placed(upgraded)
        for entry in entries:
            for who in owners(entry):
                payload = await place(live.http, who, entry["key"], entry["request"])
                answered = (payload["order"]["id"], payload["saga"]["id"])
                assert answered == (entry["orderId"], entry["sagaId"]), (who, entry)
        assert await placed(upgraded) == before, "a replayed key placed a second order"

        # Another customer with the same key places its own order (once per key).
        strangers: dict[str, str] = {}
        for entry in entries:
            request = {**entry["request"], "customerId": STRANGER["subject"]}
            order_id = (await place(live.http, STRANGER, entry["key"], request))["order"]["id"]
            assert order_id not in known, ("another caller's key gave its order", entry)
            assert strangers.setdefault(entry["key"], order_id) == order_id
        assert (await placed(upgraded))[0] == before[0] + len(strangers)
        statuses = await all_finished(upgraded)

    for entry in entries:
        if entry["outcome"] == "UNFINISHED":
            assert statuses[entry["sagaId"]] == "COMPLETED", entry
    await check_books(upgraded, kept["received"])


@pytest.mark.parametrize("release", releases())
async def test_an_upgraded_databases_read_tables_equal_their_rebuild(upgraded: str) -> None:
    """Migrations that change what the read tables hold bring stored rows to what the current
    projection writes: the migrated tables are those `projections rebuild` makes from the journal."""
    before = await read_tables(upgraded)
    engine = make_engine(upgraded)
    try:
        await rebuild_projections(engine)
    finally:
        await engine.dispose()
    assert await read_tables(upgraded) == before


async def read_tables(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: [
                    jsonable(dict(row._mapping))
                    for row in await conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in READ_TABLES
            }
    finally:
        await engine.dispose()
