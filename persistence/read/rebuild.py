"""Rebuild every read table from the journal, through the same projection the live path uses.

Run it with the service stopped: the live projection writes into the same tables. Sagas are replayed
in batches of whole journals, one transaction per batch, so memory stays bounded however long the
journal is; if a rebuild stops half-way, running it again starts over from empty tables.

Stock levels are not projected (receipts are not saga events), so the rebuild checks them instead:
what each `stock` row holds reserved must equal what the journal says sagas still hold there, and
each row's on-hand and reserved must be what the section's stock movements add up to.

On PostgreSQL, where several processes lease the sagas they drive, a saga that moves on its own
and has no lease (its journal restored or copied in without one) gets an expired lease, which the
first process to look claims: no replayed saga is left without a driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.model.saga import SagaState, replay
from persistence import codec
from persistence.read.projection import (
    held_stock,
    order_row,
    saga_row,
    shipment_rows,
    step_rows,
    timeline_rows,
)
from persistence.tables import (
    journal,
    order_view,
    saga_leases,
    saga_step_view,
    saga_timeline,
    saga_view,
    shipment_view,
    stock,
)
from persistence.write.movements import unexplained_stock

READ_TABLES = (saga_view, saga_step_view, saga_timeline, order_view, shipment_view)

StockKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class StockMismatch:
    """A stock row whose reserved quantity is not what the journal's unreleased reservations add up to."""

    warehouse_code: str
    section_code: str
    sku: str
    reserved: int
    held_by_sagas: int

    def describe(self) -> str:
        return (
            f"{self.warehouse_code}/{self.section_code}/{self.sku}: {self.reserved} reserved, "
            f"sagas hold {self.held_by_sagas}"
        )


@dataclass(frozen=True, slots=True)
class UnexplainedStock:
    """A stock row that is not what its section's movements add up to."""

    warehouse_code: str
    section_code: str
    sku: str
    held: tuple[int, int]  # (on_hand, reserved) in the stock row
    moved: tuple[int, int]  # (on_hand, reserved) summed from the movements

    def describe(self) -> str:
        return (
            f"{self.warehouse_code}/{self.section_code}/{self.sku}: {self.held[0]} on hand and "
            f"{self.held[1]} reserved, movements add up to {self.moved[0]} and {self.moved[1]}"
        )


@dataclass(frozen=True, slots=True)
class RebuildReport:
    sagas: int
    batches: int
    stock_mismatches: list[StockMismatch] = field(default_factory=list)
    unexplained_stock: list[UnexplainedStock] = field(default_factory=list)


# Told, after each batch, how many journal events it replayed.
Progress = Callable[[int], None]


async def count_events(engine: AsyncEngine) -> int:
    """How many events the journal holds: what a rebuild replays."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(journal))).scalar_one())


async def rebuild_projections(
    engine: AsyncEngine, batch_size: int = 500, progress: Progress | None = None
) -> RebuildReport:
    async with engine.begin() as conn:
        for table in READ_TABLES:
            await conn.execute(delete(table))
    held: Counter[StockKey] = Counter()
    moving: list[str] = []
    sagas = batches = 0
    last = ""
    while True:
        async with engine.begin() as conn:
            states = await _replay_batch(conn, last, batch_size)
        if not states:
            break
        for state in states:
            held.update(held_stock(state))
        moving += [state.saga_id for state in states if not state.is_settled]
        sagas, batches, last = sagas + len(states), batches + 1, states[-1].saga_id
        if progress is not None:
            progress(sum(state.version for state in states))
    if engine.dialect.name == "postgresql":  # SQLite has one process, which drives every saga
        async with engine.begin() as conn:
            await _lease_unleased(conn, moving)
    async with engine.connect() as conn:
        mismatches = await check_stock(conn, held)
        unexplained = [
            UnexplainedStock(*key, held=stock_held, moved=moved)
            for key, stock_held, moved in await unexplained_stock(conn)
        ]
    return RebuildReport(sagas, batches, mismatches, unexplained)


# As the migration that brought leases gave the sagas then moving: expired since the epoch.
EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)


async def _lease_unleased(conn: AsyncConnection, moving: list[str]) -> None:
    """Give each saga of `moving` that has no lease an expired one (persistence/fleet/leases.py: a lease row
    exists exactly while a saga moves on its own)."""
    for start in range(0, len(moving), 500):
        chunk = moving[start : start + 500]
        leased = set(
            (await conn.execute(select(saga_leases.c.saga_id).where(saga_leases.c.saga_id.in_(chunk))))
            .scalars()
            .all()
        )
        orphans = [{"saga_id": s, "owner": "", "expires_at": EXPIRED} for s in chunk if s not in leased]
        if orphans:
            await conn.execute(insert(saga_leases), orphans)


async def _replay_batch(conn: AsyncConnection, after: str, size: int) -> list[SagaState]:
    """Project the next `size` sagas (by id, after `after`) from their journals; return their states."""
    ids = (
        await conn.execute(
            select(journal.c.saga_id)
            .distinct()
            .where(journal.c.saga_id > after)
            .order_by(journal.c.saga_id)
            .limit(size)
        )
    ).scalars()
    entries = await conn.execute(
        select(journal.c.saga_id, journal.c.type, journal.c.version, journal.c.data, journal.c.position)
        .where(journal.c.saga_id.in_(list(ids)))
        .order_by(journal.c.saga_id, journal.c.sequence)
    )
    rows: dict[str, list[dict[str, object]]] = {t.name: [] for t in READ_TABLES}
    states = []
    for saga_id, group in groupby(entries, key=lambda entry: entry.saga_id):
        stored = list(group)
        events = [codec.decode(entry.type, entry.version, entry.data) for entry in stored]
        change = replay(saga_id, events)
        state = change.after
        states.append(state)
        rows[saga_view.name].append(saga_row(state))
        rows[saga_step_view.name] += step_rows(state)
        timeline = timeline_rows(change)
        for row, entry in zip(timeline, stored, strict=True):
            row["position"] = entry.position
        rows[saga_timeline.name] += timeline
        rows[order_view.name].append(order_row(state))
        rows[shipment_view.name] += shipment_rows(state)
    for table in READ_TABLES:
        if rows[table.name]:
            await conn.execute(insert(table), rows[table.name])
    return states


async def check_stock(conn: AsyncConnection, held: Counter[StockKey]) -> list[StockMismatch]:
    levels = await conn.execute(
        select(stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.reserved).order_by(
            stock.c.warehouse_code, stock.c.section_code, stock.c.sku
        )
    )
    reserved = {(r.warehouse_code, r.section_code, r.sku): r.reserved for r in levels}
    return [
        StockMismatch(warehouse, section, sku, reserved.get(key, 0), held[key])
        for key in sorted(reserved.keys() | held.keys())
        if reserved.get(key, 0) != held[key]
        for warehouse, section, sku in [key]
    ]
