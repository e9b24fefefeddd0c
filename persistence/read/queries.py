"""The read side of sagas and orders: queries over the read tables, never the write model. The
catalog's reads are persistence/read/catalog.py's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Row, select

from domain.model.saga import SagaStatus
from persistence.read.event_log import TIMELINE_WITH_SAGA
from persistence.read.paging import PageFilter, Position, Window, count, filtered, newest_first
from persistence.read.reader import Reader
from persistence.tables import order_view, saga_leases, saga_timeline, saga_view, shipment_view

UNFINISHED = [
    s.value
    for s in SagaStatus
    if s not in (SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.NEEDS_ATTENTION)
]

# The timeline in journal order, each row with whose saga it is.
_JOURNAL = select(saga_timeline, saga_view.c.customer_id).select_from(TIMELINE_WITH_SAGA)


class ReadModel(Reader):
    """Sagas and orders as the projection left them: one row, a list, a page, or a batch for the
    API's DataLoaders; and the timeline that feeds the live side."""

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
