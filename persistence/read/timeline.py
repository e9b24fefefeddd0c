"""The read side of the sagas' timelines in the orders the live side follows them: per saga by
sequence (subscriptions, and their cursors), and all sagas' in journal order (the journal feed)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from persistence.read.event_log import TIMELINE_WITH_SAGA
from persistence.read.paging import Window
from persistence.read.reader import Reader
from persistence.read.rows import TransitionRow
from persistence.tables import saga_timeline, saga_view

# The timeline in journal order, joined to whose saga each row is.
_JOURNAL = select(saga_timeline).select_from(TIMELINE_WITH_SAGA)


class TimelineReads(Reader):
    """Timeline rows past a point: a saga's newest, each saga's past its cursor, and the journal's
    between two positions."""

    async def latest_transition(self, saga_id: str) -> TransitionRow | None:
        """The saga's newest timeline row: its current status and the event that led to it."""
        return await self._typed_one(
            select(saga_timeline)
            .where(saga_timeline.c.saga_id == saga_id)
            .order_by(saga_timeline.c.sequence.desc())
            .limit(1),
            TransitionRow,
        )

    async def transitions_after(self, cursors: Mapping[str, int]) -> list[TransitionRow]:
        """Timeline rows of each saga in `cursors` with a sequence past its cursor, by saga and
        sequence."""
        if not cursors:
            return []
        query = select(saga_timeline).where(
            saga_timeline.c.saga_id.in_(list(cursors)),
            saga_timeline.c.sequence > min(cursors.values()),
        )
        rows = await self._typed_all(
            query.order_by(saga_timeline.c.saga_id, saga_timeline.c.sequence), TransitionRow
        )
        return [row for row in rows if row.sequence > cursors[row.saga_id]]

    async def journal_page(self, window: Window[int], customer_id: str | None = None) -> list[TransitionRow]:
        """Timeline rows strictly between journal positions `window.after` and `window.before`, at
        most `window.limit`: the first ones in position order, or with `window.backward` the last
        ones, in reverse order. With `customer_id`, only that customer's sagas' rows."""
        position = saga_timeline.c.position
        query = _JOURNAL.limit(window.limit)
        if window.after is not None:
            query = query.where(position > window.after)
        if window.before is not None:
            query = query.where(position < window.before)
        if customer_id is not None:
            query = query.where(saga_view.c.customer_id == customer_id)
        return await self._typed_all(
            query.order_by(position.desc() if window.backward else position), TransitionRow
        )

    async def customer_at(self, position: int) -> str | None:
        """Whose saga the event at journal position `position` is (its customer_id); None if no
        event has that position."""
        query = select(saga_view.c.customer_id).select_from(TIMELINE_WITH_SAGA)
        row = await self._one(query.where(saga_timeline.c.position == position))
        return None if row is None else str(row.customer_id)
