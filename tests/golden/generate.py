"""Write golden journals: one saga down every path, run by this release on SQLite with a clock that
moves only when told, stored as its journal rows (events as stored) and its participants' rows, with
the state they fold to and the read rows they project to, in `journals/<release version>/`.

    .venv/bin/python -m tests.golden.generate             # this release's journals (once per release)
    .venv/bin/python -m tests.golden.generate --expected  # re-derive expected state and rows only

A journal, once committed, is never rewritten: it is what a release left in a database, and
`tests/integration/test_golden_journals.py` holds every later release to folding, projecting and
finishing it. `--expected` re-derives only the expected state and rows of every committed journal,
for a deliberate change of the read model, which the diff then shows line by line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy import select

from domain.model.interventions import Actor
from domain.model.saga import Participant
from persistence.database import make_engine
from tests.golden.rows import expected_of, jsonable, participant_rows, read_rows
from tests.integration.staging import Stage, start_stage
from tests.warehouse import WarehouseStub

GOLDEN = Path(__file__).parent / "journals"

Scenario = Callable[[Stage], Awaitable[str]]


async def _retrying(stage: Stage, saga_id: str) -> None:
    """Wait (in real time, briefly) until the saga's latest step waits for its retry."""
    for _ in range(2000):
        row = await stage.svc.read.saga(saga_id)
        if row is not None and row.steps and row.steps[-1]["status"] == "RETRYING":
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"saga {saga_id} never waited for a retry")


async def completed(stage: Stage) -> str:
    return await stage.order(2)


async def reserve_retried(stage: Stage) -> str:
    stage.gate.refusals[Participant.INVENTORY] = 1
    return await stage.order(1)


async def shortage(stage: Stage) -> str:
    return await stage.order(500)


async def confirm_refused(stage: Stage) -> str:
    stage.gate.refusals[Participant.ORDERS] = 3
    return await stage.order(1)


async def reserve_timed_out(stage: Stage) -> str:
    stage.gate.holds[Participant.INVENTORY] = 1
    return await stage.order(1)


async def confirm_timed_out(stage: Stage) -> str:
    stage.gate.holds[Participant.ORDERS] = 1
    return await stage.order(1)


async def shipment_timed_out(stage: Stage) -> str:
    # The shipment's timeout is retried, and the next attempt completes the saga.
    stage.gate.holds[Participant.SHIPMENT] = 1
    return await stage.order(1)


async def parked(stage: Stage) -> str:
    stage.gate.refusals[Participant.SHIPMENT] = 3
    return await stage.order(1)


async def parked_then_retried(stage: Stage) -> str:
    saga_id = await parked(stage)
    await stage.svc.orchestrator.retry(saga_id, Actor("operator-1", "operator"))
    await stage.run_until(saga_id, "COMPLETED")
    return saga_id


async def parked_then_aborted(stage: Stage) -> str:
    saga_id = await parked(stage)
    await stage.svc.orchestrator.abort(
        saga_id, "the carrier lost the parcel", Actor("operator-1", "operator")
    )
    await stage.run_until(saga_id, "FAILED")
    return saga_id


async def cancelled(stage: Stage) -> str:
    stage.gate.refusals[Participant.ORDERS] = 1
    saga_id = await stage.place(1)
    await _retrying(stage, saga_id)
    await stage.svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    await stage.run_until(saga_id, "FAILED")
    return saga_id


async def compensation_timed_out(stage: Stage) -> str:
    # Cancelled while the confirmation waits for its retry; releasing the stock then times out once.
    stage.gate.refusals[Participant.ORDERS] = 1
    saga_id = await stage.place(1)
    await _retrying(stage, saga_id)
    stage.gate.holds[Participant.INVENTORY] = 1
    await stage.svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    await stage.run_until(saga_id, "FAILED")
    return saga_id


async def dispatched(stage: Stage) -> str:
    saga_id = await stage.order(1)
    saga = await stage.svc.read.saga(saga_id)
    order = saga and await stage.svc.read.order(saga.order_id)
    assert order is not None and order.shipment_id is not None
    await stage.svc.orchestrator.dispatch_shipment(saga_id, order.shipment_id)
    return saga_id


async def cancelled_after_completion(stage: Stage) -> str:
    # Completed, then cancelled before its shipment was dispatched: the shipment is cancelled first.
    saga_id = await stage.order(1)
    await stage.svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    await stage.run_until(saga_id, "FAILED")
    return saga_id


async def shipment_rejected(stage: Stage) -> str:
    # The warehouse refuses its shipment: stock released, order cancelled (ShipmentRejected).
    stage.gate.refusing.add("W1")
    try:
        return await stage.order(1)
    finally:
        stage.gate.refusing.clear()


async def remote_cancelled(stage: Stage) -> str:
    # A remote warehouse service creates the shipment (its route and reference journalled); the order
    # is then cancelled, and the cancel goes to that service.
    stub = WarehouseStub(secret=WAREHOUSE_SECRET)
    async with stub.running():
        await stage.route("W1", stub.url)
        try:
            saga_id = await stage.order(1)
            await stage.svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
            await stage.run_until(saga_id, "FAILED")
        finally:
            await stage.route("W1", None)
    assert [c.type for c in stub.commands] == ["CreateShipment", "CancelShipment"], stub.commands
    return saga_id


async def waiting_for_retry(stage: Stage) -> str:
    # Left in flight: a release must finish what this one started.
    stage.gate.refusals[Participant.INVENTORY] = 1
    saga_id = await stage.place(1)
    await _retrying(stage, saga_id)
    return saga_id


SCENARIOS: dict[str, Scenario] = {
    "completed": completed,
    "reserve_retried": reserve_retried,
    "shortage": shortage,
    "confirm_refused": confirm_refused,
    "reserve_timed_out": reserve_timed_out,
    "confirm_timed_out": confirm_timed_out,
    "shipment_timed_out": shipment_timed_out,
    "parked": parked,
    "parked_then_retried": parked_then_retried,
    "parked_then_aborted": parked_then_aborted,
    "cancelled": cancelled,
    "compensation_timed_out": compensation_timed_out,
    "dispatched": dispatched,
    "cancelled_after_completion": cancelled_after_completion,
    "shipment_rejected": shipment_rejected,
    "remote_cancelled": remote_cancelled,
    "waiting_for_retry": waiting_for_retry,
}
# What the stage signs its commands to a remote warehouse with.
WAREHOUSE_SECRET = "whsec_" + "Z29sZGVuLWpvdXJuYWxzLXdhcmVob3VzZS1zZWNyZXQ="


async def record(url: str) -> dict[str, dict[str, Any]]:
    """Run every scenario, a minute apart, and return each saga's stored journal."""
    from persistence.tables import journal

    stage = await start_stage(url, warehouse_service_secret=WAREHOUSE_SECRET)
    sagas: dict[str, str] = {}
    try:
        await stage.stock(100)
        for name, scenario in SCENARIOS.items():
            if sagas:
                await stage.clock.advance(60)
            sagas[name] = await scenario(stage)
    finally:
        await stage.svc.stop()
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            out = {}
            for name, saga_id in sagas.items():
                query = select(journal).where(journal.c.saga_id == saga_id).order_by(journal.c.sequence)
                entries = [jsonable(dict(r._mapping)) for r in await conn.execute(query)]
                out[name] = {
                    "saga_id": saga_id,
                    "journal": entries,
                    "rows": await read_rows(conn, saga_id),
                    "participants": await participant_rows(conn, entries[0]["data"]["order_id"]),
                }
            return out
    finally:
        await engine.dispose()


def write(path: Path, golden: dict[str, Any]) -> None:
    path.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expected", action="store_true", help="re-derive expected state and rows only")
    args = parser.parse_args()
    if args.expected:
        for path in golden_files():
            golden = json.loads(path.read_text())
            write(path, {**golden, **asyncio.run(expected_of(golden["saga_id"], golden["journal"]))})
        return
    release = GOLDEN / version("ordersaga")
    if release.exists():
        raise SystemExit(f"{release} exists: a committed journal is never rewritten")
    with tempfile.TemporaryDirectory() as scratch:
        recorded = asyncio.run(record(f"sqlite+aiosqlite:///{scratch}/golden.db"))
    release.mkdir(parents=True)
    for name, golden in recorded.items():
        state = asyncio.run(expected_of(golden["saga_id"], golden["journal"]))["state"]
        write(release / f"{name}.json", {**golden, "state": state})


def golden_files() -> list[Path]:
    """Every committed golden journal, of every release."""
    return sorted(GOLDEN.glob("*/*.json"))


if __name__ == "__main__":
    main()
