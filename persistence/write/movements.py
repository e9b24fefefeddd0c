"""Stock movements: each change of a section's stock as a row, written by whoever changes the stock,
in the same transaction, so that the movements of a section always add up to its stock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.model.values import MovementKind, Pick
from persistence.connection import Db, GatheredRows
from persistence.prepared import Prepared
from persistence.tables import stock, stock_movements

_RECORD = Prepared(insert(stock_movements))

StockKey = tuple[str, str, str]


def movement(
    key: StockKey,
    kind: MovementKind,
    at: datetime,
    reference: str | None,
    *,
    on_hand: int = 0,
    reserved: int = 0,
) -> dict[str, Any]:
    """A movement row: at (warehouse, section, sku) `key`, on-hand and reserved changed by these."""
    warehouse_code, section_code, sku = key
    return {
        "id": str(uuid.uuid4()),
        "warehouse_code": warehouse_code,
        "section_code": section_code,
        "sku": sku,
        "kind": kind.value,
        "on_hand_change": on_hand,
        "reserved_change": reserved,
        "reference": reference,
        "occurred_at": at,
    }


def pick_movements(
    picks: Iterable[Pick], kind: MovementKind, at: datetime, reference: str | None
) -> list[dict[str, Any]]:
    """The movements of an order's picks: reserved or released (reserved up or down; `reference` is
    the order), or dispatched (both down; `reference` is the shipment)."""
    sign = 1 if kind is MovementKind.RESERVATION else -1
    taken = kind is MovementKind.DISPATCH
    return [
        movement(
            (p.warehouse_code, p.section_code, p.sku),
            kind,
            at,
            reference,
            on_hand=-p.quantity if taken else 0,
            reserved=sign * p.quantity,
        )
        for p in picks
    ]


class _Gathered(GatheredRows):
    """A transaction's movements, inserted by one statement just before it commits: nothing reads
    them back before it commits."""

    STATEMENT = _RECORD


async def record(conn: Db, rows: list[dict[str, Any]]) -> None:
    """Record `rows` (`movement`s) in `conn`'s transaction; they are inserted when it commits."""
    if rows:
        conn.deferred(_Gathered).rows.extend(rows)


async def unexplained_stock(conn: AsyncConnection) -> list[tuple[StockKey, tuple[int, int], tuple[int, int]]]:
    """Sections whose stock is not what their movements add up to: (key, (on_hand, reserved) held,
    (on_hand, reserved) summed from movements), in key order."""
    m = stock_movements.c
    key = (m.warehouse_code, m.section_code, m.sku)
    summed = select(*key, func.sum(m.on_hand_change), func.sum(m.reserved_change)).group_by(*key)
    sums = {
        (w, s, k): (int(on_hand), int(reserved)) for w, s, k, on_hand, reserved in await conn.execute(summed)
    }
    levels = select(
        stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.on_hand, stock.c.reserved
    )
    held = {(w, s, k): (on_hand, reserved) for w, s, k, on_hand, reserved in await conn.execute(levels)}
    return [
        (section, held.get(section, (0, 0)), sums.get(section, (0, 0)))
        for section in sorted(held.keys() | sums.keys())
        if held.get(section, (0, 0)) != sums.get(section, (0, 0))
    ]
