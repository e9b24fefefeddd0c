"""Newest-first keyset pages over a read table: ordered by (time, id), continued after a position.

A position is a row's own (time, id), not an offset, so rows that arrive between two pages (newer,
so before the position) never shift, repeat or hide the rows after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Select, Table, select, tuple_


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


def newest_first(
    table: Table, time: Column[datetime], where: PageFilter, after: Position | None, limit: int
) -> Select:
    query = select(table).order_by(time.desc(), table.c.id.desc()).limit(limit)
    if where.statuses:
        query = query.where(table.c.status.in_(where.statuses))
    if where.customer_id is not None:
        query = query.where(table.c.customer_id == where.customer_id)
    if where.since is not None:
        query = query.where(time >= where.since)
    if where.until is not None:
        query = query.where(time < where.until)
    if after is not None:
        query = query.where(tuple_(time, table.c.id) < (after.at, after.id))
    return query
