"""The books of a database any release wrote, read straight from its tables: every saga finished,
each order reserved at most once, stock held exactly for the orders that still hold it, and on hand
what was received less what left the warehouse."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from persistence.database import make_engine
from persistence.read.projection import picks_from_json
from persistence.tables import orders, reservations, saga_view, stock


async def check_books(database_url: str, received: dict[str, int]) -> dict[str, Any]:
    """Assert the books balance, given the stock received per SKU; answer the saga statuses counted."""
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            sagas = (await conn.execute(select(saga_view.c.order_id, saga_view.c.status))).all()
            order_ids = set((await conn.execute(select(orders.c.id))).scalars())
            reservation_rows = (await conn.execute(select(reservations))).all()
            stock_rows = (await conn.execute(select(stock))).all()
    finally:
        await engine.dispose()

    status_of = {saga.order_id: saga.status for saga in sagas}
    assert set(status_of) == order_ids, "an order without its saga, or a saga without its order"
    assert set(status_of.values()) <= {"COMPLETED", "FAILED"}, Counter(status_of.values())
    reserved_orders = [r.order_id for r in reservation_rows]
    assert len(reserved_orders) == len(set(reserved_orders)), "an order reserved twice"

    held, dispatched = Counter[str](), Counter[str]()
    holders = set()
    for reservation in reservation_rows:
        if reservation.dispatched_at is None and reservation.released_at is not None:
            continue
        books = dispatched if reservation.dispatched_at is not None else held
        for pick in picks_from_json(reservation.picks):
            books[pick.sku] += pick.quantity
        if books is held:
            holders.add(reservation.order_id)
    # Stock is held for an order only while it stands: completed, and not yet dispatched.
    assert all(status_of[order_id] == "COMPLETED" for order_id in holders)

    on_hand, reserved = Counter[str](), Counter[str]()
    for row in stock_rows:
        assert 0 <= row.reserved <= row.on_hand, row
        on_hand[row.sku] += row.on_hand
        reserved[row.sku] += row.reserved
    assert reserved == held, "stock reserved that no live order holds, or held but not reserved"
    assert on_hand == Counter(received) - dispatched, "on hand is not what was received less dispatched"
    return Counter(status_of.values())
