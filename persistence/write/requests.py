"""The idempotency keys of receiveStock, adjustStock and dispatchShipment: a key is bound to its
request in the transaction of the request's effect, so the key is there exactly when the effect is.

A request whose key is bound to the same request is a replay: it does nothing again. On PostgreSQL
two transactions binding one key meet at its primary key: the second waits for the first and, if
that one commits, fails with ConcurrencyConflict; run again, it finds the key and replays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from domain.model.problems import Problem
from domain.ports import ConcurrencyConflict, IdempotencyKeyReused, KeyedRequest
from persistence.connection import Db
from persistence.database import is_key_clash
from persistence.prepared import Prepared
from persistence.tables import request_keys

_FIND = Prepared(select(request_keys.c.fingerprint).where(request_keys.c.idempotency_key == bindparam("key")))
_BIND = Prepared(insert(request_keys))


class SqlRequestKeys:
    """RequestKeys (domain/ports.py) in the transaction of `conn`."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def bound(self, idempotency_key: str) -> str | None:
        row = (await self._db.execute(_FIND, {"key": idempotency_key})).first()
        return None if row is None else str(row.fingerprint)

    async def bind(self, request: KeyedRequest, at: datetime) -> None:
        row = {"idempotency_key": request.idempotency_key, "fingerprint": request.fingerprint, "bound_at": at}
        try:
            await self._db.execute(_BIND, row)
        except IntegrityError as clash:
            if is_key_clash(clash, request_keys):
                raise ConcurrencyConflict("another request bound the same idempotency key first") from clash
            raise


async def at_most_once(
    conn: Db,
    request: KeyedRequest | None,
    at: datetime,
    work: Callable[[Db], Awaitable[list[Problem]]],
) -> list[Problem] | None:
    """Run `work` (which changes everything it was asked to, or nothing and says why) unless
    `request`'s key is bound already: None then (a replay, nothing done). Its key is bound at `at`
    only when `work` took effect, so a refused request binds nothing. Raises IdempotencyKeyReused if
    the key is bound to a different request, ConcurrencyConflict if another transaction bound it
    meanwhile."""
    keys = SqlRequestKeys(conn)
    if request is not None:
        earlier = await keys.bound(request.idempotency_key)
        if earlier is not None:
            if earlier != request.fingerprint:
                raise IdempotencyKeyReused(request.idempotency_key)
            return None
    problems = await work(conn)
    if request is not None and not problems:
        await keys.bind(request, at)
    return problems
