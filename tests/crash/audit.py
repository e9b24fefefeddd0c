"""The books after a bad day, read straight from the database: every acknowledged order is there with a
finished saga, no step took effect twice, compensations ran, and stock adds up."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from domain.model.saga import SagaEvent, SagaState, SagaStatus, Step, StepStatus, fold
from persistence import codec
from persistence.connection import AsyncDb
from persistence.database import make_engine
from persistence.tables import journal, orders, reservations, saga_view, shipments, stock
from persistence.write.journal import SqlSagaStore


async def saga_statuses(database_url: str) -> dict[str, str]:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            return {r.id: r.status for r in await conn.execute(select(saga_view.c.id, saga_view.c.status))}
    finally:
        await engine.dispose()


async def journal_of(database_url: str, saga_id: str) -> list[SagaEvent]:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            return await SqlSagaStore(AsyncDb(conn)).load(saga_id)
    finally:
        await engine.dispose()


async def audit(database_url: str, acknowledged: dict[str, str], on_hand: int) -> dict[str, SagaState]:
    """Check the books, given the sagas whose placeOrder answered (saga id -> order id) and the stock
    received; answer each saga's state as its journal folds. A placeOrder cut off by the kill may or
    may not have committed; a saga it did commit must be as sound as any other."""
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            entries = (
                await conn.execute(select(journal).order_by(journal.c.saga_id, journal.c.sequence))
            ).all()
            views = {r.id: r for r in await conn.execute(select(saga_view))}
            order_rows = {r.id: r for r in await conn.execute(select(orders))}
            reservation_rows = (await conn.execute(select(reservations))).all()
            shipment_rows = (await conn.execute(select(shipments))).all()
            stock_rows = (await conn.execute(select(stock))).all()
    finally:
        await engine.dispose()

    journals = defaultdict(list)
    for entry in entries:
        journals[entry.saga_id].append(entry)
    assert set(acknowledged) <= set(journals), "an acknowledged order's saga was lost"

    states = {}
    for saga_id, saga_entries in journals.items():
        assert [e.sequence for e in saga_entries] == list(range(1, len(saga_entries) + 1)), saga_id
        state = fold(saga_id, [codec.decode(e.type, e.version, e.data) for e in saga_entries])
        assert state.is_terminal, f"saga {saga_id} is {state.status.value}"
        assert (views[saga_id].status, views[saga_id].version) == (state.status.value, state.version)
        assert state.order_id == acknowledged.get(saga_id, state.order_id)
        states[saga_id] = state
    assert set(order_rows) == {state.order_id for state in states.values()}

    reservation_of = {}
    for reservation in reservation_rows:
        assert reservation.order_id not in reservation_of, f"order {reservation.order_id} reserved twice"
        reservation_of[reservation.order_id] = reservation
    shipments_of = defaultdict(list)
    for shipment in shipment_rows:
        shipments_of[shipment.order_id].append(shipment)
    for order_id, made in shipments_of.items():
        warehouses = [s.warehouse_code for s in made]
        assert len(warehouses) == len(set(warehouses)), (
            f"order {order_id} was shipped twice from one warehouse"
        )

    reserved_for_completed = 0
    for state in states.values():
        order_id = state.order_id
        order, reservation = order_rows[order_id], reservation_of.get(order_id)
        if state.status is SagaStatus.COMPLETED:
            # One shipment per warehouse its picks come from, each created.
            made = shipments_of[order_id]
            assert order.status == "CONFIRMED"
            assert sorted(s.warehouse_code for s in made) == sorted({p.warehouse_code for p in state.picks})
            assert {s.status for s in made} == {"CREATED"}
            assert reservation is not None and reservation.released_at is None
            reserved_for_completed += sum(line.quantity for line in state.lines)
        else:
            # FAILED, never without its compensations: the order cancelled, any reservation released.
            assert order.status == "CANCELLED" and state.order_cancelled
            assert all(s.status == "CANCELLED" for s in shipments_of[order_id])
            if reservation is not None:
                assert reservation.released_at is not None
                assert (Step.RELEASE_STOCK, StepStatus.SUCCEEDED) in [
                    (r.step, r.status) for r in state.history
                ]

    assert sum(r.on_hand for r in stock_rows) == on_hand
    assert sum(r.reserved for r in stock_rows) == reserved_for_completed
    return states
