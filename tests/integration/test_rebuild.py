"""`ordersaga projections rebuild`: replaying the journal yields exactly the rows the live projection
wrote, on SQLite and PostgreSQL, and stock that drifted from the journal is reported."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import selectors
import struct
import subprocess
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, update

from api.cli import main
from persistence.database import make_engine
from persistence.read.rebuild import (
    READ_TABLES,
    StockMismatch,
    UnexplainedStock,
    count_events,
    rebuild_projections,
)
from persistence.tables import journal, shipments, stock
from tests.conftest import run_apart
from tests.integration.staging import Stage, start_stage


@pytest.fixture
async def stage(database_url: str) -> AsyncIterator[Stage]:
    stage = await start_stage(database_url)
    await stage.stock()
    yield stage
    await stage.svc.stop()


async def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {table.name: await _rows(conn, table) for table in (*READ_TABLES, shipments)}
    finally:
        await engine.dispose()


async def _rows(conn: Any, table: Table) -> list[dict[str, Any]]:
    result = await conn.execute(select(table).order_by(*table.primary_key.columns))
    return [dict(row._mapping) for row in result]


async def test_a_rebuild_yields_exactly_the_rows_the_live_projection_wrote(
    stage: Stage, database_url: str
) -> None:
    sagas = await stage.outcomes()
    await stage.svc.stop()
    live = await snapshot(database_url)
    statuses = {r["id"]: r["status"] for r in live["saga_view"]}
    assert {name: statuses[saga_id] for name, saga_id in sagas.items()} == {
        "completed": "COMPLETED",
        "retried": "COMPLETED",
        "shortage": "FAILED",
        "confirm_refused": "FAILED",
        "reserve_timed_out": "FAILED",
        "parked": "NEEDS_ATTENTION",
    }
    assert len(live["saga_step_view"]) > len(sagas) and len(live["saga_timeline"]) > len(sagas)

    engine = make_engine(database_url)
    try:
        replayed: list[int] = []
        report = await rebuild_projections(engine, batch_size=4, progress=replayed.append)
        events = await count_events(engine)
    finally:
        await engine.dispose()

    # Progress is told per batch, and adds up to the journal's events.
    assert len(replayed) == 2 and sum(replayed) == events == len(live["saga_timeline"])

    assert (report.sagas, report.batches, report.stock_mismatches, report.unexplained_stock) == (6, 2, [], [])
    assert await snapshot(database_url) == live
    # The shipment read rows say what the shipment participant wrote; the parked saga's shipment was
    # requested, and its warehouse has none.
    created = [r for r in live["shipment_view"] if r["status"] != "REQUESTED"]
    assert [
        (r["id"], r["order_id"], r["warehouse_code"], r["picks"], r["created_at"]) for r in created
    ] == sorted(
        (r["id"], r["order_id"], r["warehouse_code"], r["picks"], r["created_at"]) for r in live["shipments"]
    )
    requested = [r for r in live["shipment_view"] if r["status"] == "REQUESTED"]
    assert [r["saga_id"] for r in requested] == [sagas["parked"]]


def test_the_rebuild_command_reports_stock_that_disagrees_with_the_journal(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def stage_and_drift() -> None:
        stage = await start_stage(database_url)
        try:
            await stage.stock()
            await stage.order(4)
        finally:
            await stage.svc.stop()

    run_apart(stage_and_drift())
    main(["projections", "rebuild", "--database-url", database_url])
    assert "stock agrees with the journal and with its movements" in capsys.readouterr().out

    async def drift() -> None:
        engine = make_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(update(stock).values(reserved=stock.c.reserved + 1))
        await engine.dispose()

    run_apart(drift())
    with pytest.raises(SystemExit) as exit:
        main(["projections", "rebuild", "--database-url", database_url])
    mismatch = StockMismatch("W1", "A", "SKU-1", reserved=5, held_by_sagas=4)
    unexplained = UnexplainedStock("W1", "A", "SKU-1", held=(10, 5), moved=(10, 4))
    assert str(exit.value) == (
        f"stock disagrees with the journal's unreleased reservations:\n  {mismatch.describe()}\n"
        f"stock disagrees with its movements:\n  {unexplained.describe()}"
    )


def test_the_rebuild_command_refuses_a_journal_from_a_later_release(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def stage_from_the_future() -> None:
        stage = await start_stage(database_url)
        try:
            await stage.stock()
            await stage.order(1)
        finally:
            await stage.svc.stop()
        engine = make_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(update(journal).where(journal.c.sequence == 1).values(version=99))
        await engine.dispose()

    run_apart(stage_from_the_future())
    with pytest.raises(SystemExit) as exit:
        main(["projections", "rebuild", "--database-url", database_url])
    assert "SagaStarted at format version 99 is unknown to this release" in str(exit.value)


def test_the_rebuild_command_shows_its_progress_on_a_terminal(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"

    async def two_orders() -> None:
        stage = await start_stage(url)
        try:
            await stage.stock()
            await stage.order(1)
            await stage.order(2)
        finally:
            await stage.svc.stop()

    run_apart(two_orders())
    terminal, attached = pty.openpty()
    fcntl.ioctl(attached, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # rows, columns
    command = [
        str(Path(sys.executable).with_name("ordersaga")),
        "projections",
        "rebuild",
        "--database-url",
        url,
    ]
    try:
        done = subprocess.run(command, stderr=attached, stdout=subprocess.PIPE, timeout=60, check=True)
        os.close(attached)
        shown = b""
        with selectors.DefaultSelector() as ready:
            ready.register(terminal, selectors.EVENT_READ)
            while ready.select(timeout=0):
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the terminal closed: all of it was read
                    break
                if not chunk:
                    break
                shown += chunk
    finally:
        os.close(terminal)
    # Events done of all, elapsed<left, rate: tqdm's line.
    assert re.search(rb"(\d+)/\1 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ events/s\]", shown), shown
    assert b"rebuilt the read tables from 2 sagas" in done.stdout, done.stdout
