"""The journal as one log in commit order: what consumers outside the process follow and resume.

Each journal event has a position (persistence/write/journal.py gives them out in commit order), and
its timeline row holds it with the saga's status after the event. `events_after(p)` reads the events
past position p, ascending; as positions become visible in order, a consumer that keeps the last
position it handled and asks again never skips an event and never sees one twice.

A cursor is a position wrapped so that clients treat it as opaque (`encode_cursor`); the wire form of
an event (`LoggedEvent.payload`) is the one every outbound adapter sends: webhooks, the event
stream, and the `cursor` of the GraphQL feed.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Result, func, select

from persistence.read.reader import ReadEngine
from persistence.tables import journal_head, saga_timeline, saga_view

_CURSOR_PREFIX = "journal:"


def encode_cursor(position: int) -> str:
    """The opaque cursor of journal position `position` (0 for "before the first event")."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position `cursor` stands for. Raises ValueError unless it is exactly what `encode_cursor`
    makes of some position, so a cursor of another listing or an edited one is refused."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError) as bad:
        raise ValueError("not a journal cursor") from bad
    number = text.removeprefix(_CURSOR_PREFIX)
    if number == text or not number.isdigit() or len(number) > 18:
        raise ValueError("not a journal cursor")
    position = int(number)
    if encode_cursor(position) != cursor:
        raise ValueError("not a journal cursor")
    return position


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One journal event as consumers see it. `position` counts from 1 over the whole journal in commit
    order; `sequence` counts from 1 within the saga; `status` is the saga's after this event."""

    position: int
    saga_id: str
    order_id: str
    customer_id: str
    sequence: int
    type: str
    status: str
    step: str | None
    attempt: int | None
    reason: str | None
    occurred_at: datetime

    @property
    def cursor(self) -> str:
        return encode_cursor(self.position)

    @property
    def event_id(self) -> str:
        """The event's id for deduplication (`webhook-id`, `Nats-Msg-Id`): the same on every resend."""
        return f"evt_{self.saga_id}_{self.sequence}"

    def payload(self) -> bytes:
        """The JSON body sent out: `{"type", "timestamp", "data": {"sagaId", "orderId", "sequence",
        "status", "cursor", "step", "attempt", "reason"}}`. `type` is the journal event's type
        (docs/events.md lists them); `timestamp` is when it happened, RFC 3339 in UTC. Compact
        JSON in UTF-8, written by orjson: every relay renders every event it sends, and orjson does
        it at a sixth of json.dumps's CPU."""
        return orjson.dumps(
            {
                "type": self.type,
                "timestamp": self.occurred_at.isoformat().replace("+00:00", "Z"),
                "data": {
                    "sagaId": self.saga_id,
                    "orderId": self.order_id,
                    "sequence": self.sequence,
                    "status": self.status,
                    "cursor": self.cursor,
                    "step": self.step,
                    "attempt": self.attempt,
                    "reason": self.reason,
                },
            }
        )


# Each timeline row with its saga's: whose saga it is, for consumers that filter or route by it.
TIMELINE_WITH_SAGA = saga_timeline.join(saga_view, saga_view.c.id == saga_timeline.c.saga_id)
# LoggedEvent's fields, in its order.
_EVENTS = select(
    saga_timeline.c.position,
    saga_timeline.c.saga_id,
    saga_view.c.order_id,
    saga_view.c.customer_id,
    saga_timeline.c.sequence,
    saga_timeline.c.type,
    saga_timeline.c.status,
    saga_timeline.c.step,
    saga_timeline.c.attempt,
    saga_timeline.c.reason,
    saga_timeline.c.occurred_at,
).select_from(TIMELINE_WITH_SAGA)


async def events_after(reads: ReadEngine, position: int, limit: int) -> list[LoggedEvent]:
    """The events past `position`, ascending, at most `limit`."""
    query = _EVENTS.where(saga_timeline.c.position > position).order_by(saga_timeline.c.position).limit(limit)
    return await reads.read(query, _logged)


def _logged(rows: Iterable[Sequence[Any]]) -> list[LoggedEvent]:
    # By position, not by a row's mapping: that costs a dictionary per event, on a path that reads
    # every event once per relay.
    return [LoggedEvent(*row) for row in rows]


async def head(reads: ReadEngine) -> int:
    """The last position given out (0 before the first event)."""
    return int(await reads.read(select(func.max(journal_head.c.position)), Result.scalar_one) or 0)
