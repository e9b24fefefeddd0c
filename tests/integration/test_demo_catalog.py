"""The demo catalog (`serve --demo`) on PostgreSQL, with two services starting together over one
empty database in one event loop: the catalog is loaded once, even when the second looks at the
catalog before the first has committed its load and goes on after it has."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import select

from api import demo
from api.service import Service
from api.settings import Settings
from persistence.connection import Db
from persistence.database import make_engine
from persistence.tables import stock
from persistence.write import catalog

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
# How long the first load waits for the second to look too. Where the second waits for the first to
# commit before it may look, it never does: the first goes on after this, well within lock_timeout.
SECOND_LOOK_S = 0.5


async def stock_levels(database_url: str) -> dict[tuple[str, str, str], int]:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(stock.c.sku, stock.c.warehouse_code, stock.c.section_code, stock.c.on_hand)
            )
            return {(r.sku, r.warehouse_code, r.section_code): r.on_hand for r in rows}
    finally:
        await engine.dispose()


@postgresql_only
async def test_two_services_starting_together_load_the_demo_catalog_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked = [asyncio.Event(), asyncio.Event()]
    first_started = asyncio.Event()
    empty_for_loading = catalog.empty_for_loading

    async def looks_in_turn(conn: Db) -> bool:
        """The race made certain: the first service's load waits until the second has looked at the
        catalog, and the second, having found it empty, goes on only once the first has loaded it."""
        turn = 0 if not looked[0].is_set() else 1
        empty = await empty_for_loading(conn)
        looked[turn].set()
        if turn == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(looked[1].wait(), SECOND_LOOK_S)
        elif empty:
            await first_started.wait()
        return empty

    monkeypatch.setattr(catalog, "empty_for_loading", looks_in_turn)
    first, second = (
        Service(Settings(database_url=database_url, demo=True, instance=name)) for name in ("first", "second")
    )
    starting = asyncio.create_task(first.start())
    starting.add_done_callback(lambda _: first_started.set())
    try:
        await looked[0].wait()
        await asyncio.gather(starting, second.start())
        assert await stock_levels(database_url) == {
            (sku, warehouse, section): quantity for sku, warehouse, section, quantity in demo.STOCK
        }
    finally:
        await second.stop()
        await first.stop()
