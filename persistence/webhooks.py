"""Webhook endpoints and their deliveries, as stored (the sending is api/outbound/webhooks.py).

An endpoint is a URL, the journal event types it takes (None: all), its signing secret and whether
it is enabled. How far it got through the journal is its relay's position (persistence/fleet/
relays.py, relay `webhook:<endpoint id>`), which starts at the journal's head when the endpoint is
created: it is sent what happens from then on.

Events an endpoint took at the first attempt leave no row. One it did not take is stored as a
delivery, PENDING, with that attempt's outcome and when to try again, together with every later event
of the same saga (PENDING too, held behind it, never attempted), so that a saga's events reach the
endpoint in journal order while the relay goes on with the other sagas. A delivery ends SUCCEEDED once
the endpoint took it, or FAILED when its retries ran out or the endpoint was disabled; FAILED ones wait
for an operator's `redeliver`, and so do the events held behind them. SUCCEEDED ones stay listed for
operators for a while (`--webhook-keep-succeeded`, a week), then the relay prunes them (`prune`).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Delete, Row, Update, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.connection import Db, Writer, upsert
from persistence.read.paging import Window
from persistence.tables import journal_head, relays, webhook_deliveries, webhook_endpoints


class DeliveryStatus(enum.Enum):
    PENDING = "PENDING"  # to be sent: due at next_attempt_at, or held behind an earlier event
    SUCCEEDED = "SUCCEEDED"  # the endpoint answered 2xx
    FAILED = "FAILED"  # given up on: sent again only when an operator redelivers it


UNDELIVERED = (DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value)


def relay_name(endpoint_id: str) -> str:
    """The relay (persistence/fleet/relays.py) that keeps endpoint `endpoint_id`'s journal position."""
    return f"webhook:{endpoint_id}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    events: frozenset[str] | None  # the journal event types it takes; None: every type
    description: str | None
    secret: str = field(repr=False)  # never in a log line, even of the whole object
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime

    def takes(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    @classmethod
    def from_row(cls, row: Row) -> Endpoint:
        fields = row._mapping
        events = fields["events"]
        return cls(**{**fields, "events": None if events is None else frozenset(events)})


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored delivery. `attempts` counts the attempts of its current series (a redelivery starts
    a new one); `response_code`, `latency_ms` and `error` are the last attempt's."""

    endpoint_id: str
    position: int
    event_id: str
    event_type: str
    saga_id: str
    body: str
    status: str
    attempts: int
    response_code: int | None
    latency_ms: int | None
    error: str | None
    failing_since: datetime | None
    next_attempt_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt at a stored delivery: its new status and the attempt's details."""

    position: int
    status: DeliveryStatus
    response_code: int | None
    latency_ms: int
    error: str | None
    failing_since: datetime | None
    next_attempt_at: datetime | None


_RECORD = (
    update(webhook_deliveries)
    .where(
        webhook_deliveries.c.endpoint_id == bindparam("endpoint"),
        webhook_deliveries.c.position == bindparam("at"),
        webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
    )
    .values(
        status=bindparam("new_status"),
        attempts=webhook_deliveries.c.attempts + 1,
        response_code=bindparam("code"),
        latency_ms=bindparam("latency"),
        error=bindparam("failure"),
        failing_since=bindparam("since"),
        next_attempt_at=bindparam("next_at"),
        updated_at=bindparam("now"),
    )
)


class WebhookStore:
    """The endpoints and deliveries. Reads go to `reader`, writes through `writer`
    (persistence/connection.py); every method raises what the database raises when it does not
    answer, and a write OutcomeUnknown when its commit failed (it may have committed)."""

    def __init__(self, reader: AsyncEngine, writer: Writer) -> None:
        self._reader = reader
        self._write = writer

    # ------------------------------------------------------------------------------------ endpoints

    async def create(
        self, url: str, events: frozenset[str] | None, description: str | None, secret: str, now: datetime
    ) -> Endpoint:
        """A new enabled endpoint, whose relay starts at the journal's head."""
        endpoint = Endpoint(
            id=str(uuid.uuid4()),
            url=url,
            events=events,
            description=description,
            secret=secret,
            enabled=True,
            disabled_reason=None,
            failing_since=None,
            created_at=now,
        )
        head = select(func.coalesce(func.max(journal_head.c.position), 0)).scalar_subquery()

        async def work(db: Db) -> None:
            await db.execute(insert(webhook_endpoints).values(**_columns(endpoint)))
            await db.execute(insert(relays).values(name=relay_name(endpoint.id), position=head))

        await self._write(work)
        return endpoint

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        query = select(webhook_endpoints).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        async with self._reader.connect() as conn:
            return [Endpoint.from_row(row) for row in await conn.execute(query)]

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        async with self._reader.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else Endpoint.from_row(row)

    async def enabled_ids(self) -> set[str]:
        query = select(webhook_endpoints.c.id).where(webhook_endpoints.c.enabled.is_(True))
        async with self._reader.connect() as conn:
            return set((await conn.scalars(query)).all())

    async def change(self, endpoint_id: str, changes: Mapping[str, object]) -> Endpoint | None:
        """Set the endpoint's columns named in `changes` (Endpoint's field names: url, events,
        description, secret, enabled, disabled_reason, failing_since), and no others, so that what a
        relay records meanwhile (its health, a disabling) is kept; the endpoint as it is then, None if
        there is none."""
        if not changes:
            return await self.endpoint(endpoint_id)
        values = dict(changes)
        if values.get("events") is not None:
            values["events"] = sorted(values["events"])  # type: ignore[call-overload]
        query = (
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(**values)
            .returning(webhook_endpoints)
        )

        async def work(db: Db) -> Endpoint | None:
            row = (await db.execute(query)).first()
            return None if row is None else Endpoint.from_row(row)

        return await self._write(work)

    async def delete(self, endpoint_id: str) -> bool:
        """Remove the endpoint, its deliveries and its relay; False if there was none."""

        async def work(db: Db) -> bool:
            await db.execute(
                delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
            )
            await db.execute(delete(relays).where(relays.c.name == relay_name(endpoint_id)))
            gone = await db.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))
            return gone.rowcount == 1

        return await self._write(work)

    async def note_health(self, endpoint_id: str, succeeded: bool, now: datetime) -> datetime | None:
        """After a round of attempts: one success clears the endpoint's failing time; failures alone
        start it if it was not running. Answers since when the endpoint has been failing (None: it is
        not)."""
        since = None if succeeded else func.coalesce(webhook_endpoints.c.failing_since, now)
        query = (
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(failing_since=since)
            .returning(webhook_endpoints.c.failing_since)
        )

        async def work(db: Db) -> datetime | None:
            found = (await db.execute(query)).first()
            return None if found is None else found[0]

        return await self._write(work)

    async def disable(self, endpoint_id: str, reason: str, now: datetime, failing_before: datetime) -> bool:
        """Disable the endpoint for `reason` if it has been failing since `failing_before` or earlier, as
        stored now (what the relay read may be stale: a send beside its round may have succeeded
        since); its pending deliveries fail (redeliver sends them again). Whether it was disabled."""

        async def work(db: Db) -> bool:
            disabled = await db.execute(
                update(webhook_endpoints)
                .where(
                    webhook_endpoints.c.id == endpoint_id,
                    webhook_endpoints.c.enabled.is_(True),  # not again, nor over an admin's disabling
                    webhook_endpoints.c.failing_since <= failing_before,
                )
                .values(enabled=False, disabled_reason=reason)
            )
            if disabled.rowcount == 0:
                return False
            await db.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.endpoint_id == endpoint_id,
                    webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                )
                .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, updated_at=now)
            )
            return True

        return await self._write(work)

    # ----------------------------------------------------------------------------------- deliveries

    async def unfinished_sagas(self, endpoint_id: str, saga_ids: Iterable[str]) -> set[str]:
        """Those of `saga_ids` with an event the endpoint has not taken yet (PENDING or FAILED): their
        later events must wait behind it."""
        wanted = sorted(set(saga_ids))
        if not wanted:
            return set()
        query = (
            select(webhook_deliveries.c.saga_id)
            .distinct()
            .where(
                webhook_deliveries.c.endpoint_id == endpoint_id,
                webhook_deliveries.c.status.in_(UNDELIVERED),
                webhook_deliveries.c.saga_id.in_(wanted),
            )
        )
        async with self._reader.connect() as conn:
            return set((await conn.scalars(query)).all())

    async def undelivered(self, endpoint_id: str) -> bool:
        """Whether the endpoint has a delivery not taken yet (PENDING or FAILED)."""
        d = webhook_deliveries
        query = (
            select(d.c.position).where(d.c.endpoint_id == endpoint_id, d.c.status.in_(UNDELIVERED)).limit(1)
        )
        async with self._reader.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def store(self, deliveries: Sequence[Delivery]) -> None:
        """Store `deliveries`, all of one endpoint, unless stored already (one there, from a round
        repeated after a crash or a lost lease, stays as it is). None are stored once their endpoint
        is deleted: its relay may still be finishing a round, and on SQLite the write shares a
        commit with the sagas', which an insert refused by the foreign key would roll back."""
        if not deliveries:
            return
        rows = [_delivery_columns(delivery) for delivery in deliveries]
        endpoint_id = deliveries[0].endpoint_id
        exists = select(webhook_endpoints.c.id).where(webhook_endpoints.c.id == endpoint_id)

        async def work(db: Db) -> None:
            if (await db.execute(exists)).first() is None:
                return
            await db.execute(upsert(db, webhook_deliveries).on_conflict_do_nothing(), rows)

        await self._write(work)

    async def due(self, endpoint_id: str, now: datetime, sagas: int) -> list[list[Delivery]]:
        """For at most `sagas` sagas whose first undelivered event is PENDING and due, their undelivered
        events in journal order, the due one first: what a retry round sends."""
        d = webhook_deliveries
        mine = and_(d.c.endpoint_id == endpoint_id, d.c.status.in_(UNDELIVERED))
        heads = select(d.c.saga_id, func.min(d.c.position).label("head")).where(mine).group_by(d.c.saga_id)
        first = heads.subquery()
        due = (
            select(d.c.saga_id)
            .join(first, and_(d.c.saga_id == first.c.saga_id, d.c.position == first.c.head))
            .where(
                d.c.endpoint_id == endpoint_id,
                d.c.status == DeliveryStatus.PENDING.value,
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            )
            .order_by(first.c.head)
            .limit(sagas)
        )
        async with self._reader.connect() as conn:
            saga_ids = list((await conn.scalars(due)).all())
            if not saga_ids:
                return []
            query = select(d).where(mine, d.c.saga_id.in_(saga_ids)).order_by(d.c.saga_id, d.c.position)
            rows = [Delivery(**row._mapping) for row in await conn.execute(query)]
        chains: dict[str, list[Delivery]] = {}
        for delivery in rows:
            chains.setdefault(delivery.saga_id, []).append(delivery)
        return list(chains.values())

    async def record(self, endpoint_id: str, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Store the outcomes of a round's attempts at stored deliveries, in one statement."""
        if not outcomes:
            return
        parameters = [
            {
                "endpoint": endpoint_id,
                "at": outcome.position,
                "new_status": outcome.status.value,
                "code": outcome.response_code,
                "latency": outcome.latency_ms,
                "failure": outcome.error,
                "since": outcome.failing_since,
                "next_at": outcome.next_attempt_at,
                "now": now,
            }
            for outcome in outcomes
        ]

        async def work(db: Db) -> None:
            await db.execute(_RECORD, parameters)

        await self._write(work)

    async def prune(self, endpoint_id: str, succeeded_before: datetime, limit: int) -> int:
        """Delete at most `limit` of the endpoint's SUCCEEDED deliveries last updated before
        `succeeded_before`, earliest events first; answers how many. PENDING and FAILED ones stay:
        they are still to be sent, or wait for an operator."""
        d = webhook_deliveries
        doomed = (
            select(d.c.position)
            .where(
                d.c.endpoint_id == endpoint_id,
                d.c.status == DeliveryStatus.SUCCEEDED.value,
                d.c.updated_at < succeeded_before,
            )
            .order_by(d.c.position)
            .limit(limit)
        )
        return await self._write(
            _count(delete(d).where(d.c.endpoint_id == endpoint_id, d.c.position.in_(doomed)))
        )

    async def last_error(self, endpoint_id: str) -> str | None:
        """Why the endpoint's latest failed attempt failed (None if none is stored)."""
        d = webhook_deliveries
        query = (
            select(d.c.error)
            .where(d.c.endpoint_id == endpoint_id, d.c.error.is_not(None))
            .order_by(d.c.updated_at.desc(), d.c.position.desc())
            .limit(1)
        )
        async with self._reader.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def redeliver(self, endpoint_id: str, now: datetime, event_id: str | None = None) -> int:
        """Make the endpoint's FAILED deliveries (or only the one of event `event_id`) PENDING and due
        now, with a fresh series of attempts; answers how many."""
        d = webhook_deliveries
        query = (
            update(d)
            .where(d.c.endpoint_id == endpoint_id, d.c.status == DeliveryStatus.FAILED.value)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                failing_since=None,
                next_attempt_at=None,
                updated_at=now,
            )
        )
        if event_id is not None:
            query = query.where(d.c.event_id == event_id)
        return await self._write(_count(query))

    async def page(self, endpoint_id: str, statuses: Sequence[str], window: Window[int]) -> list[Delivery]:
        """The endpoint's deliveries in one of `statuses` (any, when empty), in `window` of the list
        of them latest event first: below journal position `window.after`, above `window.before`,
        at most `window.limit`, the first ones or with `window.backward` the last ones (read from
        the `before` end, so in reverse list order)."""
        d = webhook_deliveries
        order = d.c.position.asc() if window.backward else d.c.position.desc()
        query = select(d).where(d.c.endpoint_id == endpoint_id).order_by(order).limit(window.limit)
        if statuses:
            query = query.where(d.c.status.in_(sorted(statuses)))
        if window.after is not None:
            query = query.where(d.c.position < window.after)
        if window.before is not None:
            query = query.where(d.c.position > window.before)
        async with self._reader.connect() as conn:
            return [Delivery(**row._mapping) for row in await conn.execute(query)]


def _count(statement: Update | Delete) -> Callable[[Db], Awaitable[int]]:
    """Work that runs `statement` and answers how many rows it changed."""

    async def work(db: Db) -> int:
        return (await db.execute(statement)).rowcount

    return work


def _columns(endpoint: Endpoint) -> dict[str, object]:
    """The endpoint as its row's values."""
    events = None if endpoint.events is None else sorted(endpoint.events)
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": events,
        "description": endpoint.description,
        "secret": endpoint.secret,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "created_at": endpoint.created_at,
    }


def _delivery_columns(delivery: Delivery) -> dict[str, object]:
    return dataclasses.asdict(delivery)
