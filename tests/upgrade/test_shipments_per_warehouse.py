"""Migration 0015 on a database an earlier version wrote, where a saga was aborted while its
CREATE_SHIPMENT was in flight and then parked in its compensations (NEEDS_ATTENTION): the shipments
it shows are withdrawn (CANCELLED), as a rebuild from the journal shows them, not requested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select

from domain.model.saga import (
    SagaAborted,
    SagaChange,
    SagaEvent,
    SagaParked,
    SagaStarted,
    SagaStatus,
    Step,
    StepFailed,
    StepStarted,
    StepSucceeded,
)
from domain.model.values import OrderLine, Pick
from persistence.connection import AsyncDb
from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.read.projection import picks_json
from persistence.read.rebuild import rebuild_projections
from persistence.tables import reservations, shipment_view
from persistence.write.journal import SqlSagaStore
from tests.upgrade.releases import downgrade
from tests.upgrade.test_upgrade import read_tables

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SAGA, ORDER = "saga-parked", "order-parked"
PICKS = (Pick("W1", "A", "TEA", 2), Pick("W2", "B", "TEA", 1))


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def begin(step: Step, seconds: int) -> StepStarted:
    return StepStarted(step, 1, at(seconds + 5), at(seconds))


# Only event types earlier versions wrote: the shipment was never created, so no ShipmentCreated.
ABORTED_THEN_PARKED: list[SagaEvent] = [
    begin(Step.RESERVE_STOCK, 1),
    StepSucceeded(Step.RESERVE_STOCK, at(1), PICKS),
    begin(Step.CONFIRM_ORDER, 2),
    StepSucceeded(Step.CONFIRM_ORDER, at(2)),
    begin(Step.CREATE_SHIPMENT, 3),
    SagaAborted("wrong address", at(4), "operator-1", "operator"),
    begin(Step.RELEASE_STOCK, 5),
    StepFailed(Step.RELEASE_STOCK, 1, "inventory down", True, None, at(6)),
    SagaParked("inventory down", at(6)),
]


async def test_a_saga_aborted_then_parked_shows_its_shipments_withdrawn_as_a_rebuild_does(
    database_url: str,
) -> None:
    started = SagaChange.started(SAGA, SagaStarted(ORDER, "c-1", (OrderLine("TEA", 3),), T0))
    change = started.apply(ABORTED_THEN_PARKED)
    assert change.after.status is SagaStatus.NEEDS_ATTENTION
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            db = AsyncDb(conn)
            await SqlSagaStore(db).append(change, None)
            await db.before_commit()
            reservation = {"id": f"{SAGA}:RESERVE_STOCK", "order_id": ORDER, "picks": picks_json(PICKS)}
            await conn.execute(insert(reservations).values(created_at=at(1), **reservation))
            # The version before 0015 showed a shipment only once it was created: this saga had none.
            await conn.execute(delete(shipment_view))
            await conn.run_sync(downgrade, "0014")
        await upgrade(engine)
        async with engine.connect() as conn:
            query = select(shipment_view.c.warehouse_code, shipment_view.c.status)
            migrated = (await conn.execute(query.order_by(shipment_view.c.warehouse_code))).all()
        before = await read_tables(database_url)
        await rebuild_projections(engine)
    finally:
        await engine.dispose()
    assert [tuple(row) for row in migrated] == [("W1", "CANCELLED"), ("W2", "CANCELLED")]
    assert await read_tables(database_url) == before
