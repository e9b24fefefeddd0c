"""What golden journals are compared by: a saga's read rows and folded state as plain JSON, and the
expected state and rows the current code derives from a stored journal."""

from __future__ import annotations

import dataclasses
import enum
import tempfile
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.model.saga import SagaState, fold
from persistence import codec
from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.read.rebuild import READ_TABLES, rebuild_projections
from persistence.tables import (
    UtcDateTime,
    journal,
    journal_head,
    orders,
    reservations,
    saga_timeline,
    shipments,
)


def jsonable(value: Any) -> Any:
    """`value` in the plain JSON a golden file holds: times as ISO 8601, enums by value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def folded(saga_id: str, entries: list[dict[str, Any]]) -> SagaState:
    return fold(saga_id, [codec.decode(e["type"], e.get("version", 1), e["data"]) for e in entries])


PARTICIPANT_TABLES = (orders, reservations, shipments)


async def participant_rows(conn: AsyncConnection, order_id: str) -> dict[str, list[dict[str, Any]]]:
    """What the participants keep of the saga's order: the order, its reservation, its shipment."""
    rows = {}
    for table in PARTICIPANT_TABLES:
        key = table.c.id if table is orders else table.c.order_id
        result = await conn.execute(select(table).where(key == order_id))
        rows[table.name] = [jsonable(dict(r._mapping)) for r in result]
    return rows


def stored_rows(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Golden rows as rows to insert: their times back as datetimes. A column added since the row was
    written is left to its default, as the migration that added it left it."""
    times = [c.name for c in table.c if isinstance(c.type, UtcDateTime)]
    return [{**r, **{t: datetime.fromisoformat(r[t]) for t in times if r.get(t)}} for r in rows]


async def store_journal(conn: AsyncConnection, entries: list[dict[str, Any]]) -> None:
    """Store golden journal entries as an earlier release did, then number them as migration 0012
    numbers the events it finds: in the order they were recorded (never before an earlier event of
    their saga), saga and sequence breaking ties."""
    settled: dict[str, Any] = {}
    keyed = []
    for entry in sorted(entries, key=lambda e: (e["saga_id"], e["sequence"])):
        at = max(entry["recorded_at"], settled.get(entry["saga_id"], entry["recorded_at"]))
        settled[entry["saga_id"]] = at
        keyed.append(((at, entry["saga_id"], entry["sequence"]), entry))
    ordered = [entry for _, entry in sorted(keyed, key=lambda pair: pair[0])]
    await conn.execute(
        insert(journal), stored_rows(journal, [{**e, "position": n} for n, e in enumerate(ordered, start=1)])
    )
    await conn.execute(delete(journal_head))
    await conn.execute(insert(journal_head), {"id": 1, "position": len(ordered)})


async def read_rows(conn: AsyncConnection, saga_id: str) -> dict[str, list[dict[str, Any]]]:
    """The saga's rows in every read table, in key order. A timeline row's journal position depends
    on what else the journal holds, so it is left out."""
    rows = {}
    for table in READ_TABLES:
        where = table.c.saga_id == saga_id if "saga_id" in table.c else table.c.id == saga_id
        result = await conn.execute(select(table).where(where).order_by(*table.primary_key.columns))
        left_out = {"position"} if table is saga_timeline else set()
        kept = ({k: v for k, v in r._mapping.items() if k not in left_out} for r in result)
        rows[table.name] = [jsonable(row) for row in kept]
    return rows


async def expected_of(saga_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The state and read rows the current code derives from a stored journal (on a scratch SQLite)."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = make_engine(f"sqlite+aiosqlite:///{scratch}/expected.db")
        try:
            await upgrade(engine)
            async with engine.begin() as conn:
                await store_journal(conn, entries)
            await rebuild_projections(engine)
            async with engine.connect() as conn:
                rows = await read_rows(conn, saga_id)
        finally:
            await engine.dispose()
    return {"state": jsonable(folded(saga_id, entries)), "rows": rows}
