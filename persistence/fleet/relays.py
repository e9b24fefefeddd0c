"""Relay positions and leases: how far each outbound relay (a webhook endpoint, the event stream) has
sent the journal, and, with several processes over one PostgreSQL, which process drives it.

A relay reads the events past its stored position (persistence/read/event_log.py), sends them, and
stores the position of the last one its receiver took. It sends only while it holds the relay's lease
(`take`), a row of `relays` renewed on every take and advance, on the database's clock as saga leases
are (persistence/fleet/leases.py). A process that dies stops renewing; once the lease expired, the
next process to take it resumes from the stored position, so the events since are sent again: delivery
is at least once, and receivers deduplicate on each event's stable id.

Without a fleet (SQLite, or one process), this process is the only one, and it always holds the lease.
"""

from __future__ import annotations

from sqlalchemy import Executable, Interval, and_, bindparam, func, or_, select, update

from persistence.connection import Db, Writer, upsert
from persistence.fleet.leases import Fleet
from persistence.tables import relays

_MINE = relays.c.owner == bindparam("me")
_FREE = or_(relays.c.owner.is_(None), _MINE, relays.c.expires_at < func.now())
_RENEWED = func.now() + bindparam("ttl", type_=Interval())
_TAKE = (
    update(relays)
    .where(relays.c.name == bindparam("relay"), _FREE)
    .values(owner=bindparam("me"), expires_at=_RENEWED)
    .returning(relays.c.position)
)
_ADVANCE_LEASED = (
    update(relays)
    .where(relays.c.name == bindparam("relay"), _MINE, relays.c.expires_at > func.now())
    .values(position=func.greatest(relays.c.position, bindparam("position")), expires_at=_RENEWED)
    .returning(relays.c.position)
)
_ADVANCE = (
    update(relays)
    .where(relays.c.name == bindparam("relay"), relays.c.position < bindparam("position"))
    .values(position=bindparam("position"))
)
_RELEASE = (
    update(relays).where(and_(relays.c.name == bindparam("relay"), _MINE)).values(owner=None, expires_at=None)
)
_POSITION = select(relays.c.position).where(relays.c.name == bindparam("relay"))


class Relays:
    """The relays' stored positions, and their leases when `fleet` says this is one of several
    processes. Written through `writer` (persistence/connection.py). Every method raises what the
    database raises when it does not answer."""

    def __init__(self, writer: Writer, fleet: Fleet | None = None) -> None:
        self._write = writer
        self._fleet = fleet

    async def open(self, name: str) -> None:
        """Make relay `name`'s row, at position 0, unless it has one. Only the owner of what the relay
        sends makes it (the stream's relay at its start, a webhook endpoint's creation), so a relay
        still running after its endpoint was deleted cannot leave a row behind."""

        async def work(db: Db) -> None:
            await db.execute(upsert(db, relays).values(name=name, position=0).on_conflict_do_nothing())

        await self._write(work)

    async def take(self, name: str) -> int | None:
        """Take or renew the lease on relay `name`. Answers its stored position, or None while another
        live process holds it or it has no row (never opened, or deleted with its endpoint)."""
        statement: Executable = _POSITION if self._fleet is None else _TAKE
        parameters = {"relay": name, **self._params()}

        async def work(db: Db) -> int | None:
            found = (await db.execute(statement, parameters)).scalar_one_or_none()
            return None if found is None else int(found)

        return await self._write(work)

    async def advance(self, name: str, position: int) -> bool:
        """Store `position` for relay `name` (a position never moves back) and renew the lease.
        Answers False, storing nothing, if this process no longer holds the lease."""
        statement = _ADVANCE if self._fleet is None else _ADVANCE_LEASED
        parameters = {"relay": name, "position": position, **self._params()}

        async def work(db: Db) -> bool:
            found = await db.execute(statement, parameters)
            return self._fleet is None or found.first() is not None

        return await self._write(work)

    async def release(self, name: str) -> None:
        """Hand the lease back (a clean stop), so another process may take the relay at once."""
        if self._fleet is not None:
            parameters = {"relay": name, "me": self._fleet.instance}

            async def work(db: Db) -> None:
                await db.execute(_RELEASE, parameters)

            await self._write(work)

    def _params(self) -> dict[str, object]:
        """The lease's parameters (none without a fleet: the statements then take none)."""
        return {} if self._fleet is None else {"me": self._fleet.instance, "ttl": self._fleet.lease_ttl}
