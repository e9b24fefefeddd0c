"""Races made deterministic: run a competitor's work between a reservation's read of the stock and its
compare-and-swap, exactly where a concurrent commit would land."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest
from sqlalchemy import update

from persistence.db import Db
from persistence.participants import SqlInventory
from persistence.tables import stock

Interloper = Callable[[Db], Awaitable[object]]


def after_stock_reads(monkeypatch: pytest.MonkeyPatch, interloper: Interloper, times: int = 1) -> None:
    """Run `interloper` on the reservation's own connection right after each of the next `times` reads
    of stock (by any reservation, including one the interloper makes)."""
    read = SqlInventory._read
    left = times

    async def read_then_interlope(self: SqlInventory, skus: list[str]) -> object:
        nonlocal left
        result = await read(self, skus)
        if left > 0:
            left -= 1
            await interloper(self._conn)
        return result

    monkeypatch.setattr(SqlInventory, "_read", read_then_interlope)


def move_stock(skus: Sequence[str]) -> Interloper:
    """A competitor's commit as the reservation sees it: every stock row of `skus` at a new version."""

    async def move(conn: Db) -> None:
        await conn.execute(update(stock).where(stock.c.sku.in_(skus)).values(version=stock.c.version + 1))

    return move
