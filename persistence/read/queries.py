"""The read side: queries over the read tables, never the write model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Row, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.model.saga import SagaStatus
from persistence.read.event_log import TIMELINE_WITH_SAGA
from persistence.read.paging import PageFilter, Position, Window, count, filtered, newest_first
from persistence.tables import (
    order_view,
    products,
    saga_leases,
    saga_timeline,
    saga_view,
    sections,
    shipment_view,
    stock,
    stock_movements,
    warehouses,
)

UNFINISHED = [
    s.value
    for s in SagaStatus
    if s not in (SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.NEEDS_ATTENTION)
]

# The timeline in journal order, each row with whose saga it is.
_JOURNAL = select(saga_timeline, saga_view.c.customer_id).select_from(TIMELINE_WITH_SAGA)


class ReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._known_skus: set[str] = set()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

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
        """Timeline rows of each saga in `cursors` with a sequence past its cursor, by saga and
        sequence."""
        if not cursors:
            return []
        query = select(saga_timeline).where(
            saga_timeline.c.saga_id.in_(list(cursors)),
            saga_timeline.c.sequence > min(cursors.values()),
        )
        rows = await self._all(query.order_by(saga_timeline.c.saga_id, saga_timeline.c.sequence))
        return [row for row in rows if row.sequence > cursors[row.saga_id]]

    async def journal_page(self, window: Window[int], customer_id: str | None = None) -> Sequence[Row]:
        """Timeline rows strictly between journal positions `window.after` and `window.before`, at
        most `window.limit`: the first ones in position order, or with `window.backward` the last
        ones, in reverse order. Each with its saga's `customer_id`; with `customer_id`, only that
        customer's sagas' rows."""
        position = saga_timeline.c.position
        query = _JOURNAL.limit(window.limit)
        if window.after is not None:
            query = query.where(position > window.after)
        if window.before is not None:
            query = query.where(position < window.before)
        if customer_id is not None:
            query = query.where(saga_view.c.customer_id == customer_id)
        return await self._all(query.order_by(position.desc() if window.backward else position))

    async def timeline_at(self, position: int) -> Row | None:
        """The timeline row at journal position `position`, with its saga's `customer_id`."""
        return await self._one(_JOURNAL.where(saga_timeline.c.position == position))

    async def stock_levels(self, sku: str) -> Sequence[Row]:
        return await self._all(
            select(
                stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.on_hand, stock.c.reserved
            )
            .where(stock.c.sku == sku)
            .order_by(stock.c.warehouse_code, stock.c.section_code)
        )

    async def warehouses(self, codes: Sequence[str] | None = None) -> Sequence[Row]:
        """Every warehouse (or those with these `codes`), section and stock row in one query, ordered
        by warehouse, section and SKU: one row per stock row, or one with NULLs for a section holding
        nothing (or a warehouse with no sections)."""
        query = (
            select(
                warehouses.c.code.label("warehouse_code"),
                warehouses.c.name.label("warehouse_name"),
                warehouses.c.service_url,
                sections.c.code.label("section_code"),
                sections.c.storage_condition,
                stock.c.sku,
                stock.c.on_hand,
                stock.c.reserved,
            )
            .select_from(warehouses)
            .outerjoin(sections, sections.c.warehouse_code == warehouses.c.code)
            .outerjoin(
                stock,
                and_(
                    stock.c.warehouse_code == sections.c.warehouse_code,
                    stock.c.section_code == sections.c.code,
                ),
            )
            .order_by(warehouses.c.code, sections.c.code, stock.c.sku)
        )
        return await self._all(query if codes is None else query.where(warehouses.c.code.in_(codes)))

    async def warehouse_service_urls(self) -> dict[str, str]:
        """The service URL of every warehouse that has one, by warehouse code."""
        query = select(warehouses.c.code, warehouses.c.service_url).where(
            warehouses.c.service_url.is_not(None)
        )
        return {row.code: row.service_url for row in await self._all(query)}

    async def products(self, skus: Sequence[str] | None = None) -> Sequence[Row]:
        """Every product (or those with these `skus`) with its stock summed over all sections, in SKU
        order."""
        query = (
            select(
                products.c.sku,
                products.c.name,
                products.c.storage_condition,
                func.coalesce(func.sum(stock.c.on_hand), 0).label("on_hand"),
                func.coalesce(func.sum(stock.c.reserved), 0).label("reserved"),
            )
            .select_from(products)
            .outerjoin(stock, stock.c.sku == products.c.sku)
            .group_by(products.c.sku, products.c.name, products.c.storage_condition)
            .order_by(products.c.sku)
        )
        return await self._all(query if skus is None else query.where(products.c.sku.in_(skus)))

    async def known_skus(self, skus: Sequence[str]) -> set[str]:
        # Products are never removed, so a SKU once seen stays known (in every process); only the
        # ones not seen yet are looked up.
        unseen = [sku for sku in skus if sku not in self._known_skus]
        if unseen:
            rows = await self._all(select(products.c.sku).where(products.c.sku.in_(unseen)))
            self._known_skus.update(r.sku for r in rows)
        return {sku for sku in skus if sku in self._known_skus}

    async def sagas_needing_attention(self, limit: int) -> Sequence[Row]:
        """Parked sagas, the longest waiting first."""
        return await self._all(
            select(saga_view)
            .where(saga_view.c.status == SagaStatus.NEEDS_ATTENTION.value)
            .order_by(saga_view.c.updated_at, saga_view.c.id)
            .limit(limit)
        )

    async def unfinished_saga_ids(self) -> list[str]:
        rows = await self._all(select(saga_view.c.id).where(saga_view.c.status.in_(UNFINISHED)))
        return [r.id for r in rows]

    async def ping(self) -> None:
        """Raises unless the database answers."""
        await self._one(text("SELECT 1"))

    # Batches for the API's DataLoaders: one query however many keys a request asks for.

    async def leases(self, saga_ids: Sequence[str]) -> Sequence[Row]:
        """The leases of these sagas (saga_id, owner, expires_at): only running sagas on PostgreSQL
        have one."""
        return await self._all(select(saga_leases).where(saga_leases.c.saga_id.in_(saga_ids)))

    async def sagas(self, ids: Sequence[str]) -> Sequence[Row]:
        return await self._all(select(saga_view).where(saga_view.c.id.in_(ids)))

    async def orders(self, ids: Sequence[str]) -> Sequence[Row]:
        return await self._all(select(order_view).where(order_view.c.id.in_(ids)))

    async def timelines(self, saga_ids: Sequence[str]) -> Sequence[Row]:
        return await self._all(
            select(saga_timeline)
            .where(saga_timeline.c.saga_id.in_(saga_ids))
            .order_by(saga_timeline.c.saga_id, saga_timeline.c.sequence)
        )

    async def shipments(self, order_ids: Sequence[str]) -> Sequence[Row]:
        return await self._all(
            select(shipment_view)
            .where(shipment_view.c.order_id.in_(order_ids))
            .order_by(shipment_view.c.order_id, shipment_view.c.warehouse_code)
        )

    async def shipments_by_id(self, ids: Sequence[str]) -> Sequence[Row]:
        return await self._all(select(shipment_view).where(shipment_view.c.id.in_(ids)))

    async def stock_movement_page(
        self,
        sku: str,
        warehouse_code: str | None,
        section_code: str | None,
        where: PageFilter,
        window: Window[Position],
    ) -> Sequence[Row]:
        conditions = _movements(sku, warehouse_code, section_code, where)
        return await self._all(
            newest_first(stock_movements, stock_movements.c.occurred_at, conditions, window)
        )

    async def stock_movement_count(
        self, sku: str, warehouse_code: str | None, section_code: str | None, where: PageFilter
    ) -> int:
        return await self._count(count(stock_movements, _movements(sku, warehouse_code, section_code, where)))

    async def saga_page(self, where: PageFilter, window: Window[Position]) -> Sequence[Row]:
        time = saga_view.c.started_at
        return await self._all(newest_first(saga_view, time, filtered(saga_view, time, where), window))

    async def saga_count(self, where: PageFilter) -> int:
        return await self._count(count(saga_view, filtered(saga_view, saga_view.c.started_at, where)))

    async def order_page(self, where: PageFilter, window: Window[Position]) -> Sequence[Row]:
        time = order_view.c.created_at
        return await self._all(newest_first(order_view, time, filtered(order_view, time, where), window))

    async def order_count(self, where: PageFilter) -> int:
        return await self._count(count(order_view, filtered(order_view, order_view.c.created_at, where)))

    async def _count(self, query: object) -> int:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()  # type: ignore[call-overload,no-any-return]

    async def _one(self, query: object) -> Row | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()  # type: ignore[call-overload]

    async def _all(self, query: object) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).all()  # type: ignore[call-overload]


def _movements(
    sku: str, warehouse_code: str | None, section_code: str | None, where: PageFilter
) -> list[ColumnElement[bool]]:
    """The conditions of a list of stock movements: one SKU's, in one warehouse or section if given."""
    m = stock_movements.c
    conditions = [*filtered(stock_movements, m.occurred_at, where), m.sku == sku]
    if warehouse_code is not None:
        conditions.append(m.warehouse_code == warehouse_code)
    if section_code is not None:
        conditions.append(m.section_code == section_code)
    return conditions
