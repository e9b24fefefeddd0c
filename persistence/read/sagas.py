"""The read side of sagas and orders: queries over the read tables, never the write model. The
catalog's reads are persistence/read/catalog.py's, the timeline's persistence/read/timeline.py's."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from domain.model.saga import SETTLED_STATUSES, SagaStatus
from persistence.read.paging import PageFilter, Position, Window, count, filtered, newest_first
from persistence.read.reader import Reader
from persistence.read.rows import LeaseRow, OrderRow, SagaRow, ShipmentRow, TransitionRow
from persistence.tables import order_view, saga_leases, saga_timeline, saga_view, shipment_view

UNFINISHED = [s.value for s in SagaStatus if s not in SETTLED_STATUSES]


class SagaReads(Reader):
    """Sagas, orders and what hangs off them as the projection left them, by id: one at a time for a
    request, or in batches for the API's DataLoaders (one query however many keys a request asks for)."""

    async def saga(self, saga_id: str) -> SagaRow | None:
        return await self._typed_one(select(saga_view).where(saga_view.c.id == saga_id), SagaRow)

    async def order(self, order_id: str) -> OrderRow | None:
        return await self._typed_one(select(order_view).where(order_view.c.id == order_id), OrderRow)

    async def saga_timeline(self, saga_id: str) -> list[TransitionRow]:
        return await self._typed_all(
            select(saga_timeline)
            .where(saga_timeline.c.saga_id == saga_id)
            .order_by(saga_timeline.c.sequence),
            TransitionRow,
        )

    async def leases(self, saga_ids: Sequence[str]) -> list[LeaseRow]:
        """The leases of these sagas: only running sagas on PostgreSQL have one."""
        return await self._typed_all(select(saga_leases).where(saga_leases.c.saga_id.in_(saga_ids)), LeaseRow)

    async def sagas(self, ids: Sequence[str]) -> list[SagaRow]:
        return await self._typed_all(select(saga_view).where(saga_view.c.id.in_(ids)), SagaRow)

    async def orders(self, ids: Sequence[str]) -> list[OrderRow]:
        return await self._typed_all(select(order_view).where(order_view.c.id.in_(ids)), OrderRow)

    async def timelines(self, saga_ids: Sequence[str]) -> list[TransitionRow]:
        return await self._typed_all(
            select(saga_timeline)
            .where(saga_timeline.c.saga_id.in_(saga_ids))
            .order_by(saga_timeline.c.saga_id, saga_timeline.c.sequence),
            TransitionRow,
        )

    async def shipments(self, order_ids: Sequence[str]) -> list[ShipmentRow]:
        return await self._typed_all(
            select(shipment_view)
            .where(shipment_view.c.order_id.in_(order_ids))
            .order_by(shipment_view.c.order_id, shipment_view.c.warehouse_code),
            ShipmentRow,
        )

    async def shipments_by_id(self, ids: Sequence[str]) -> list[ShipmentRow]:
        return await self._typed_all(select(shipment_view).where(shipment_view.c.id.in_(ids)), ShipmentRow)


class SagaPages(Reader):
    """The sagas and the orders as lists, newest first, in keyset pages (persistence/read/paging.py),
    and how many a filter matches."""

    async def saga_page(self, where: PageFilter, window: Window[Position]) -> list[SagaRow]:
        time = saga_view.c.started_at
        return await self._typed_all(
            newest_first(saga_view, time, filtered(saga_view, time, where), window), SagaRow
        )

    async def saga_count(self, where: PageFilter) -> int:
        return await self._count(count(saga_view, filtered(saga_view, saga_view.c.started_at, where)))

    async def order_page(self, where: PageFilter, window: Window[Position]) -> list[OrderRow]:
        time = order_view.c.created_at
        return await self._typed_all(
            newest_first(order_view, time, filtered(order_view, time, where), window), OrderRow
        )

    async def order_count(self, where: PageFilter) -> int:
        return await self._count(count(order_view, filtered(order_view, order_view.c.created_at, where)))


class Worklist(Reader):
    """The sagas someone has to act on: those parked for an operator, and the unfinished ones a
    starting service resumes."""

    async def sagas_needing_attention(self, limit: int) -> list[SagaRow]:
        """Parked sagas, the longest waiting first."""
        return await self._typed_all(
            select(saga_view)
            .where(saga_view.c.status == SagaStatus.NEEDS_ATTENTION.value)
            .order_by(saga_view.c.updated_at, saga_view.c.id)
            .limit(limit),
            SagaRow,
        )

    async def unfinished_saga_ids(self) -> list[str]:
        rows = await self._all(select(saga_view.c.id).where(saga_view.c.status.in_(UNFINISHED)))
        return [r.id for r in rows]
