"""Migrations that change what shipment_view holds, on a database an earlier version wrote, leave it
as a rebuild from the journal makes it:
- 0015: a saga aborted while its CREATE_SHIPMENT was in flight and then parked in its compensations
  (NEEDS_ATTENTION) shows its shipments withdrawn (CANCELLED), not requested;
- 0016: a shipment its warehouse refused says why (`reason`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.model.saga import (
    CompensationStarted,
    SagaAborted,
    SagaChange,
    SagaEvent,
    SagaParked,
    SagaStarted,
    SagaStatus,
    ShipmentCreated,
    ShipmentRejected,
    Step,
    StepFailed,
    StepStarted,
    StepSucceeded,
    shipment_id_of,
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
SAGA, ORDER = "saga-1", "order-1"
PICKS = (Pick("W1", "A", "TEA", 2), Pick("W2", "B", "TEA", 1))
REFUSED = "warehouse W2 has no room"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def begin(step: Step, seconds: int) -> StepStarted:
    return StepStarted(step, 1, at(seconds + 5), at(seconds))


CONFIRMED: list[SagaEvent] = [
    begin(Step.RESERVE_STOCK, 1),
    StepSucceeded(Step.RESERVE_STOCK, at(1), PICKS),
    begin(Step.CONFIRM_ORDER, 2),
    StepSucceeded(Step.CONFIRM_ORDER, at(2)),
    begin(Step.CREATE_SHIPMENT, 3),
]
# Only event types versions before 0015 wrote: the shipments were never created.
ABORTED_THEN_PARKED: list[SagaEvent] = [
    SagaAborted("wrong address", at(4), "operator-1", "operator"),
    begin(Step.RELEASE_STOCK, 5),
    StepFailed(Step.RELEASE_STOCK, 1, "inventory down", True, None, at(6)),
    SagaParked("inventory down", at(6)),
]
W2_REFUSED: list[SagaEvent] = [
    ShipmentCreated(shipment_id_of(SAGA, "W1"), at(4)),
    ShipmentRejected(shipment_id_of(SAGA, "W2"), REFUSED, at(4)),
    StepFailed(Step.CREATE_SHIPMENT, 1, REFUSED, False, None, at(4)),
    CompensationStarted(REFUSED, at(4)),
]


def saga_of(events: list[SagaEvent]) -> SagaChange:
    return SagaChange.started(SAGA, SagaStarted(ORDER, "c-1", (OrderLine("TEA", 3),), T0)).apply(events)


async def migrated_shipments(
    database_url: str,
    events: list[SagaEvent],
    revision: str,
    as_it_was: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> list[tuple[str, str, str | None]]:
    """The saga of `events`, stored by this version, then taken down to `revision` (after
    `as_it_was(conn)` put the rows back as that version wrote them) and migrated up again: its
    shipments' (warehouse, status, reason), once checked that every read table equals its rebuild."""
    change = saga_of(events)
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            db = AsyncDb(conn)
            await SqlSagaStore(db).append(change, None)
            await db.before_commit()
            if as_it_was is not None:
                await as_it_was(conn)
            await conn.run_sync(downgrade, revision)
        await upgrade(engine)
        async with engine.connect() as conn:
            query = select(shipment_view.c.warehouse_code, shipment_view.c.status, shipment_view.c.reason)
            migrated = (await conn.execute(query.order_by(shipment_view.c.warehouse_code))).all()
        before = await read_tables(database_url)
        await rebuild_projections(engine)
    finally:
        await engine.dispose()
    assert await read_tables(database_url) == before
    return [(r.warehouse_code, r.status, r.reason) for r in migrated]


async def test_a_saga_aborted_then_parked_shows_its_shipments_withdrawn(database_url: str) -> None:
    async def before_0015(conn: AsyncConnection) -> None:
        reservation = {"id": f"{SAGA}:RESERVE_STOCK", "order_id": ORDER, "picks": picks_json(PICKS)}
        await conn.execute(insert(reservations).values(created_at=at(1), **reservation))
        # Versions before 0015 showed a shipment only once it was created: this saga had none.
        await conn.execute(delete(shipment_view))

    assert saga_of(CONFIRMED + ABORTED_THEN_PARKED).after.status is SagaStatus.NEEDS_ATTENTION
    shipments = await migrated_shipments(database_url, CONFIRMED + ABORTED_THEN_PARKED, "0014", before_0015)
    assert shipments == [("W1", "CANCELLED", None), ("W2", "CANCELLED", None)]


async def test_a_refused_shipment_gets_its_reason(database_url: str) -> None:
    shipments = await migrated_shipments(database_url, CONFIRMED + W2_REFUSED, "0015")
    assert shipments == [("W1", "CREATED", None), ("W2", "REJECTED", REFUSED)]
