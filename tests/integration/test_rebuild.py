"""`ordersaga projections rebuild`: replaying the journal yields exactly the rows the live projection
wrote, on SQLite and PostgreSQL, and stock that drifted from the journal is reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Table, select, update

from api.cli import main
from persistence.database import make_engine
from persistence.rebuild import READ_TABLES, StockMismatch, rebuild_projections
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
        report = await rebuild_projections(engine, batch_size=4)
    finally:
        await engine.dispose()

    assert (report.sagas, report.batches, report.stock_mismatches) == (6, 2, [])
    assert await snapshot(database_url) == live
    # The shipment read rows say what the shipment participant wrote.
    assert [(r["id"], r["order_id"], r["picks"], r["created_at"]) for r in live["shipment_view"]] == sorted(
        (r["id"], r["order_id"], r["picks"], r["created_at"]) for r in live["shipments"]
    )


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
    assert "stock agrees with the journal" in capsys.readouterr().out

    async def drift() -> None:
        engine = make_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(update(stock).values(reserved=stock.c.reserved + 1))
        await engine.dispose()

    run_apart(drift())
    with pytest.raises(SystemExit) as exit:
        main(["projections", "rebuild", "--database-url", database_url])
    mismatch = StockMismatch("W1", "A", "SKU-1", reserved=5, held_by_sagas=4)
    assert str(exit.value) == (
        f"stock disagrees with the journal's unreleased reservations:\n  {mismatch.describe()}"
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
