"""Stock row locks on PostgreSQL: taken without waiting in a shared commit, waited for only alone.

A commit lane's transaction carries many sagas' work, and all of it waits for whatever one piece of
it waits for. So a stock row (or the product row that additions of a SKU take turns on) is locked
with SKIP LOCKED there, beside a count of the rows the statement would lock: if fewer come back,
another transaction holds one, the piece of work that wanted it raises StockBusy, and the transaction
runner takes it out of the batch (which goes on without it) and hands it to the one writer for that
SKU, whose transaction waits for the row with nothing else behind it (persistence/write/
group_commit.py, docs/decisions/0024-hot-rows.md). A held row skipped is no error, so the
transaction goes on without the savepoint (two more round trips) that NOWAIT's error would need; the
rows it did lock stay locked until it ends, which costs the SKU's writer at most the wait for this
commit (this transaction waits for no stock row, so no cycle). On SQLite there are no row locks (the
writer holds the database's) and nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import DBAPIError

from persistence.connection import Db
from persistence.database import LOCK_CONFLICTS, sqlstate
from persistence.prepared import Prepared


class StockBusy(Exception):
    """A row this work must lock for `sku`'s stock is held by another transaction. `failed`: the
    transaction failed with it (it waited past the lock timeout or into a deadlock); otherwise it did
    not wait, and has written nothing since the lock was asked for (it may hold some of the rows)."""

    def __init__(self, sku: str, failed: bool) -> None:
        super().__init__(f"the stock of {sku} is locked by another transaction")
        self.sku = sku
        self.failed = failed


class Locking:
    """A SELECT that locks the rows it reads (FOR NO KEY UPDATE: no foreign key waits on it), in
    two forms prepared once: one that skips a held row and counts what it should have locked, one
    that waits for it."""

    def __init__(self, statement: Select[Any], of: Any = None) -> None:
        # The count is a scalar subquery of the statement's own snapshot, run once (an InitPlan):
        # every row the statement finds, held or not.
        wanted = select(func.count()).select_from(statement.order_by(None).subquery()).scalar_subquery()
        self._skipping = Prepared(
            statement.add_columns(wanted.label("wanted")).with_for_update(
                key_share=True, skip_locked=True, of=of
            )
        )
        self._any = Prepared(statement.order_by(None).limit(1))
        self._waiting = Prepared(statement.with_for_update(key_share=True, of=of))

    async def take(self, db: Db, parameters: dict[str, Any], sku: str) -> Sequence[Any]:
        """Run the statement on PostgreSQL as `db` allows (`Db.waits_for_stock`) and return its rows
        (in a shared commit, each with one more column, `wanted`). Raises StockBusy (naming `sku`)
        when a row is held past what `db` may wait."""
        if db.waits_for_stock:
            try:
                return list(await db.execute(self._waiting, parameters))
            except DBAPIError as error:
                if sqlstate(error) in LOCK_CONFLICTS:
                    raise StockBusy(sku, failed=True) from error
                raise
        rows = list(await db.execute(self._skipping, parameters))
        if rows:
            if rows[0].wanted == len(rows):
                return rows
        elif (await db.execute(self._any, parameters)).first() is None:
            return rows  # nothing to lock
        raise StockBusy(sku, failed=False)

    async def hold(self, db: Db, parameters: dict[str, Any], sku: str) -> None:
        """Lock the rows as `take` does, on PostgreSQL; on SQLite do nothing (see the module's note)."""
        if db.dialect.name != "sqlite":
            await self.take(db, parameters, sku)
