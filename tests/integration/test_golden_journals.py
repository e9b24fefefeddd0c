"""Journals written by earlier releases (tests/golden/journals) fold and project, with this release's
code, to the state and read rows committed beside them, on SQLite and PostgreSQL; and the sagas they
left unfinished finish. A change that would strand a saga in flight across an upgrade fails here."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from domain.model.interventions import Actor
from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.read.rebuild import rebuild_projections
from tests.golden.generate import SCENARIOS, golden_files, record
from tests.golden.rows import PARTICIPANT_TABLES, folded, jsonable, read_rows, store_journal, stored_rows
from tests.integration.staging import start_stage

GOLDEN_FILES = golden_files()


def _load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


async def _store_every_journal(url: str) -> list[dict[str, Any]]:
    goldens = [_load(path) for path in GOLDEN_FILES]
    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            entries = [e for g in goldens for e in g["journal"]]
            await store_journal(conn, entries)
            for table in PARTICIPANT_TABLES:
                rows = [r for g in goldens for r in g["participants"][table.name]]
                if rows:
                    await conn.execute(insert(table), stored_rows(table, rows))
    finally:
        await engine.dispose()
    return goldens


def test_the_golden_journals_cover_every_path() -> None:
    types = {e["type"] for path in GOLDEN_FILES for e in _load(path)["journal"]}
    assert types >= {
        "SagaStarted",
        "StepStarted",
        "StepSucceeded",
        "StepFailed",
        "StepTimedOut",
        "CompensationStarted",
        "SagaParked",
        "SagaRetried",
        "SagaAborted",
        "CustomerCancelled",
        "ShipmentDispatched",
    }
    statuses = {_load(path)["state"]["status"] for path in GOLDEN_FILES}
    assert statuses >= {"COMPLETED", "FAILED", "NEEDS_ATTENTION", "STOCK_RESERVING"}


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in GOLDEN_FILES])
def test_a_golden_journal_folds_to_its_expected_state(path: Path) -> None:
    """Every field of the state the golden's release recorded folds to what it recorded; a field added
    since (not in its file) is derived from the same journal, and checked below and by later goldens."""
    golden = _load(path)
    state = jsonable(folded(golden["saga_id"], golden["journal"]))
    assert {field: state[field] for field in golden["state"]} == golden["state"]


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in GOLDEN_FILES])
def test_a_journal_with_one_shipment_per_order_folds_into_one_shipment_with_every_pick(path: Path) -> None:
    golden = _load(path)
    state = folded(golden["saga_id"], golden["journal"])
    named = [
        e["data"]["shipment_id"]
        for e in golden["journal"]
        if e["type"] == "StepSucceeded" and e["data"].get("shipment_id")
    ]
    created = [s for s in state.shipments if s.created_at is not None]
    if named:
        # The StepSucceeded(CREATE_SHIPMENT) of a release before shipments were per warehouse.
        (only,) = created
        assert (only.shipment_id, only.picks) == (named[0], state.picks)
        assert only.warehouse_code == state.picks[0].warehouse_code
    else:
        assert created == []


async def test_golden_journals_project_to_their_expected_read_rows(database_url: str) -> None:
    goldens = await _store_every_journal(database_url)
    engine = make_engine(database_url)
    try:
        report = await rebuild_projections(engine, batch_size=5)
        assert report.sagas == len(goldens)
        async with engine.connect() as conn:
            for golden in goldens:
                assert await read_rows(conn, golden["saga_id"]) == golden["rows"], golden["saga_id"]
    finally:
        await engine.dispose()


async def test_sagas_an_earlier_release_left_unfinished_finish(database_url: str) -> None:
    goldens = await _store_every_journal(database_url)
    engine = make_engine(database_url)
    try:
        await rebuild_projections(engine)
    finally:
        await engine.dispose()
    stage = await start_stage(database_url)
    try:
        await stage.stock(100)
        # This release's clock starts after the last event the earlier one recorded.
        last = max(e["recorded_at"] for g in goldens for e in g["journal"])
        await stage.clock.advance((datetime.fromisoformat(last) - stage.clock.now()).total_seconds() + 60)
        for golden in goldens:
            saga_id, status = golden["saga_id"], golden["state"]["status"]
            if status == "NEEDS_ATTENTION":
                await stage.svc.orchestrator.retry(saga_id, Actor("operator-1", "operator"))
            if status not in ("COMPLETED", "FAILED"):
                await stage.run_until(saga_id, "COMPLETED")
    finally:
        await stage.svc.stop()


async def test_this_releases_scenarios_record_a_journal_down_every_path(tmp_path: Path) -> None:
    """What `python -m tests.golden.generate` will store for this release: every scenario runs to its
    end, and the remote warehouse's shipment is journalled with its route and its reference."""
    recorded = await record(f"sqlite+aiosqlite:///{tmp_path}/golden.db")

    assert set(recorded) == set(SCENARIOS)
    remote = recorded["remote_cancelled"]
    state = folded(remote["saga_id"], remote["journal"])
    (shipment,) = state.shipments
    assert shipment.service_url is not None and shipment.reference is not None
    assert (state.status.value, shipment.status.value) == ("FAILED", "CANCELLED")
