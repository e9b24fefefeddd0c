"""Stock row locks on PostgreSQL: taken without waiting in a shared commit, waited for only alone.

A commit lane's transaction carries many sagas' work, and all of it waits for whatever one piece of
it waits for. So a stock row (or the product row that additions of a SKU take turns on) is locked
with NOWAIT there: if another transaction holds it, the piece of work that wanted it raises
StockBusy, and the transaction runner takes it out of the batch (which goes on without it) and hands
it to the one writer for that SKU, whose transaction waits for the row with nothing else behind it
(persistence/write/group_commit.py, docs/decisions/0024-hot-rows.md). On SQLite there are no row
locks (the writer holds the database's) and nothing here runs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError

from persistence.connection import Db
from persistence.database import LOCK_CONFLICTS, sqlstate
from persistence.prepared import Prepared, Rows


class StockBusy(Exception):
    """A row this work must lock for `sku`'s stock is held by another transaction. `failed`: the
    transaction failed with it (it waited past the lock timeout or into a deadlock); otherwise it did
    not wait, and is as it was before the lock was asked for."""

    def __init__(self, sku: str, failed: bool) -> None:
        super().__init__(f"the stock of {sku} is locked by another transaction")
        self.sku = sku
        self.failed = failed


class Locking:
    """A SELECT that locks the rows it reads (FOR NO KEY UPDATE: no foreign key waits on it), in
    two forms prepared once: one that fails at once on a held row, one that waits for it."""

    def __init__(self, statement: Select[Any], of: Any = None) -> None:
        self._at_once = Prepared(statement.with_for_update(key_share=True, nowait=True, of=of))
        self._waiting = Prepared(statement.with_for_update(key_share=True, of=of))

    async def take(self, db: Db, parameters: dict[str, Any], sku: str) -> Rows:
        """Run the statement on PostgreSQL as `db` allows (`Db.waits_for_stock`) and return its rows.
        Raises StockBusy (naming `sku`) when a row is held past what `db` may wait."""
        if db.waits_for_stock:
            try:
                return await db.execute(self._waiting, parameters)
            except DBAPIError as error:
                if sqlstate(error) in LOCK_CONFLICTS:
                    raise StockBusy(sku, failed=True) from error
                raise
        # In a savepoint, so that the refusal leaves the transaction, and the batch's other work in
        # it, as it was.
        savepoint = await db.begin_nested()
        try:
            rows = await db.execute(self._at_once, parameters)
        except DBAPIError as error:
            await savepoint.rollback()
            if sqlstate(error) in LOCK_CONFLICTS:
                raise StockBusy(sku, failed=False) from error
            raise
        await savepoint.commit()
        return rows

    async def hold(self, db: Db, parameters: dict[str, Any], sku: str) -> None:
        """Lock the rows as `take` does, on PostgreSQL; on SQLite do nothing (see the module's note)."""
        if db.dialect.name != "sqlite":
            await self.take(db, parameters, sku)
