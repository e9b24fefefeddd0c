"""Newest-first keyset pages over a read table: ordered by (time, id), taken between positions.

A position is a row's own (time, id), not an offset, so rows that arrive between two pages (newer,
so before the position) never shift, repeat or hide the rows after it. A page is read from either
end of its window: forward (newest first, after a position) or backward (oldest first, before one),
so that `last`/`before` pages cost what `first`/`after` pages do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import Column, ColumnElement, Select, Table, func, select, tuple_

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class PageFilter:
    statuses: Sequence[str] = ()
    customer_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


@dataclass(frozen=True, slots=True)
class Position:
    at: datetime
    id: str


@dataclass(frozen=True, slots=True)
class Window(Generic[P]):
    """The rows of a list strictly between `after` and `before` (positions in the list's order; None:
    unbounded), at most `limit` of them: the first ones, or with `backward` the last ones, read from
    the `before` end (so they come in reverse list order)."""

    limit: int
    after: P | None = None
    before: P | None = None
    backward: bool = False


def filtered(table: Table, time: Column[datetime], where: PageFilter) -> list[ColumnElement[bool]]:
    """The conditions of `where` on `table`, whose `time` column the time bounds apply to."""
    conditions: list[ColumnElement[bool]] = []
    if where.statuses:
        conditions.append(table.c.status.in_(where.statuses))
    if where.customer_id is not None:
        conditions.append(table.c.customer_id == where.customer_id)
    if where.since is not None:
        conditions.append(time >= where.since)
    if where.until is not None:
        conditions.append(time < where.until)
    return conditions


def newest_first(
    table: Table, time: Column[datetime], conditions: Sequence[ColumnElement[bool]], window: Window[Position]
) -> Select:
    """The rows of `table` meeting `conditions` in `window`, the list being newest first by (time, id)."""
    key = tuple_(time, table.c.id)
    query = select(table).where(*conditions).limit(window.limit)
    if window.after is not None:
        query = query.where(key < (window.after.at, window.after.id))
    if window.before is not None:
        query = query.where(key > (window.before.at, window.before.id))
    if window.backward:
        return query.order_by(time.asc(), table.c.id.asc())
    return query.order_by(time.desc(), table.c.id.desc())


def count(table: Table, conditions: Sequence[ColumnElement[bool]]) -> Select:
    """How many rows of `table` meet `conditions`."""
    return select(func.count()).select_from(table).where(*conditions)
