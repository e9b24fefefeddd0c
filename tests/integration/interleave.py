"""Races made deterministic: run a competitor's work between a reservation's read of the stock and its
conditional write, exactly where a concurrent commit would land."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest
from sqlalchemy import select, update

from domain.model.values import Pick
from domain.ports import StepCommand
from persistence.connection import Db
from persistence.tables import stock
from persistence.write.participants import SqlInventory

Interloper = Callable[[Db], Awaitable[object]]


def after_stock_reads(monkeypatch: pytest.MonkeyPatch, interloper: Interloper, times: int = 1) -> None:
    """Run `interloper` on the reservation's own connection right after each of the next `times` reads
    of stock (by any reservation, including one the interloper makes)."""
    read = SqlInventory._read
    left = times

    async def read_then_interlope(
        self: SqlInventory, skus: list[str], reservation_id: str | None = None
    ) -> object:
        nonlocal left
        result = await read(self, skus, reservation_id)
        if left > 0:
            left -= 1
            await interloper(self._db)
        return result

    monkeypatch.setattr(SqlInventory, "_read", read_then_interlope)


def contend_for_stock(monkeypatch: pytest.MonkeyPatch, skus: Sequence[str], times: int) -> None:
    """For the next `times` writes of a reservation, a competitor holds every unit of `skus` still
    available while the write runs, and gives them back after it: as if its commit landed between
    the reservation's read and its write, and its compensation right after. The write misses; the
    stock is as it was."""
    take = SqlInventory._take
    left = times

    async def contended_take(self: SqlInventory, command: StepCommand, picks: tuple[Pick, ...]) -> bool:
        nonlocal left
        if left == 0:
            return await take(self, command, picks)
        left -= 1
        key = (stock.c.warehouse_code, stock.c.section_code, stock.c.sku)
        held = select(*key, (stock.c.on_hand - stock.c.reserved).label("free")).where(stock.c.sku.in_(skus))
        rows = (await self._db.execute(held)).all()
        await self._db.execute(update(stock).where(stock.c.sku.in_(skus)).values(reserved=stock.c.on_hand))
        try:
            return await take(self, command, picks)
        finally:
            for row in rows:
                await self._db.execute(
                    update(stock)
                    .where(*(column == value for column, value in zip(key, row[:3], strict=True)))
                    .values(reserved=stock.c.reserved - row.free)
                )

    monkeypatch.setattr(SqlInventory, "_take", contended_take)
