"""The read side: queries over the read model (and the journal's timeline), never the write model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.saga import SagaStatus
from persistence.tables import order_view, products, saga_timeline, saga_view, stock

UNFINISHED = [
    s.value
    for s in SagaStatus
    if s not in (SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.NEEDS_ATTENTION)
]


class ReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def saga(self, saga_id: str) -> Row | None:
        return await self._one(select(saga_view).where(saga_view.c.id == saga_id))

    async def order(self, order_id: str) -> Row | None:
        return await self._one(select(order_view).where(order_view.c.id == order_id))

    async def saga_timeline(self, saga_id: str) -> Sequence[Row]:
        return await self._all(
            select(saga_timeline).where(saga_timeline.c.saga_id == saga_id).order_by(saga_timeline.c.sequence)
        )

    async def latest_transition(self, saga_id: str) -> Row | None:
        """The saga's newest timeline row: its current status and the event that led to it."""
        return await self._one(
            select(saga_timeline)
            .where(saga_timeline.c.saga_id == saga_id)
            .order_by(saga_timeline.c.sequence.desc())
            .limit(1)
        )

    async def transitions_after(self, cursors: Mapping[str, int]) -> list[Row]:
        """Timeline rows of each saga in `cursors` with a sequence past its cursor, by saga and sequence."""
        if not cursors:
            return []
        rows = await self._all(
            select(saga_timeline)
            .where(
                saga_timeline.c.saga_id.in_(list(cursors)),
                saga_timeline.c.sequence > min(cursors.values()),
            )
            .order_by(saga_timeline.c.saga_id, saga_timeline.c.sequence)
        )
        return [row for row in rows if row.sequence > cursors[row.saga_id]]

    async def stock_levels(self, sku: str) -> Sequence[Row]:
        return await self._all(
            select(
                stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.on_hand, stock.c.reserved
            )
            .where(stock.c.sku == sku)
            .order_by(stock.c.warehouse_code, stock.c.section_code)
        )

    async def known_skus(self, skus: Sequence[str]) -> set[str]:
        rows = await self._all(select(products.c.sku).where(products.c.sku.in_(list(skus))))
        return {r.sku for r in rows}

    async def unfinished_saga_ids(self) -> list[str]:
        rows = await self._all(select(saga_view.c.id).where(saga_view.c.status.in_(UNFINISHED)))
        return [r.id for r in rows]

    async def saga_count_by_status(self) -> dict[str, int]:
        rows = await self._all(select(saga_view.c.status, func.count()).group_by(saga_view.c.status))
        return {status: count for status, count in rows}

    async def _one(self, query: object) -> Row | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()  # type: ignore[call-overload]

    async def _all(self, query: object) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).all()  # type: ignore[call-overload]
