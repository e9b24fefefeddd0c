"""Commit notices across processes on PostgreSQL: `NOTIFY` in the committing transaction, `LISTEN`
in every process.

A notice says which journal sequences of which saga a process committed, and the saga's status
after them; it carries no transitions, which stay in `saga_timeline`. PostgreSQL delivers a
notification only if its transaction commits, in commit order, to every connection listening at
that moment. Notifications sent while a listener's connection is down are gone, so after a
reconnect the listener asks the read model what changed meanwhile (`changed_since`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Text, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.model.saga import SagaStatus
from persistence.tables import saga_timeline, saga_view

CHANNEL = "saga_committed"

# A commit's notices, one `pg_notify` for each of the array `payloads`: sent by the statement that
# writes the commit's journal entries, right before COMMIT, in its round trip (persistence/write/
# journal.py), in the order they were gathered.
_PAYLOADS = (
    func.unnest(bindparam("payloads", type_=ARRAY(Text, dimensions=1)))
    .table_valued("payload")
    .render_derived(name="notice")
)
SENDING = select(func.pg_notify(literal(CHANNEL), _PAYLOADS.c.payload).label("sent"))


@dataclass(frozen=True, slots=True)
class CommitNotice:
    """Sequences `first`..`last` of a saga were committed by `instance`; `status` is the saga's
    after them."""

    instance: str
    saga_id: str
    first: int
    last: int
    status: SagaStatus

    def payload(self) -> str:
        # Instance names may hold spaces; the other fields never do, so it goes last.
        return f"{self.saga_id} {self.first} {self.last} {self.status.value} {self.instance}"

    @classmethod
    def parse(cls, payload: str) -> CommitNotice:
        """Raises ValueError for a payload not written by `payload`."""
        saga_id, first, last, status, instance = payload.split(" ", 4)
        return cls(instance, saga_id, int(first), int(last), SagaStatus(status))


async def changed_since(engine: AsyncEngine, since: datetime) -> list[CommitNotice]:
    """A notice (from no particular instance) for every saga with a transition at or after `since`:
    what a listener may have missed while it was not listening."""
    recent = (
        select(saga_timeline.c.saga_id, func.min(saga_timeline.c.sequence).label("first"))
        .where(saga_timeline.c.occurred_at >= bindparam("since"))
        .group_by(saga_timeline.c.saga_id)
        .subquery()
    )
    query = select(recent.c.saga_id, recent.c.first, saga_view.c.version, saga_view.c.status).join(
        saga_view, saga_view.c.id == recent.c.saga_id
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query, {"since": since})).all()
    return [CommitNotice("", r.saga_id, r.first, r.version, SagaStatus(r.status)) for r in rows]
