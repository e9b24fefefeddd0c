"""The saga store: the journal (append with the expected version), idempotency placements, and the
projection of each append into the read model, all in the caller's transaction.

Appends are gathered per transaction (`SagaWrites`) and sent as one statement per table just before
the commit, so a group commit of many sagas costs a handful of statements, not a handful per saga.
Whatever reads the journal or the placements flushes first, so a transaction always reads its own
writes. A version clash surfaces at the flush as ConcurrencyConflict; the transaction runner then
reruns each piece of work alone, so only the stale one fails.

On PostgreSQL positions come last (`SagaWrites.seal`, right before COMMIT): the transaction takes
the next positions from `journal_head`, whose row lock it then holds until it commits, and inserts
its journal entries so numbered, and their timeline rows. So positions are given out in commit
order, and a reader never sees position p before every position below it (docs/decisions/
0019-journal-positions.md). Only that short tail of the commit is serialised; the appends, with
their waits on other writers, come before: there a saga's read-model row, inserted or updated
against the version the append was made from, is what a writer behind another meets (the entries'
own keys are written at the seal, under the counter's lock, so they never wait). Taking the
positions and inserting the entries are one statement (one round trip for any number of entries),
and the transaction's own entries are read from memory until then. On SQLite, whose one writer
holds the database's lock from BEGIN IMMEDIATE to COMMIT, no other transaction can take positions
in between, so the entries take theirs as they are inserted at the flush (and their timeline rows
with them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from domain.model.saga import SagaChange, SagaEvent, SagaState
from domain.ports import ConcurrencyConflict, Placement
from persistence import codec
from persistence.connection import Db
from persistence.database import LOCK_CONFLICTS, is_key_clash
from persistence.fleet.leases import LeaseBook, lease_change
from persistence.fleet.notifications import SENDING, CommitNotice
from persistence.prepared import Prepared
from persistence.read.projection import order_row, saga_row, shipment_rows, step_rows, timeline_rows
from persistence.tables import (
    journal,
    journal_head,
    order_view,
    placements,
    saga_step_view,
    saga_timeline,
    saga_view,
    shipment_view,
)

_SAGA_CHANGES = (
    "status",
    "failure_reason",
    "version",
    "current_step",
    "next_wakeup_at",
    "steps",
    "updated_at",
    "failed_step",
    "duration_ms",
    "failure_kind",
)
_ORDER_CHANGES = ("status", "picks", "shipment_id", "updated_at", "shipped_at")
_SHIPMENT_CHANGES = ("status", "created_at", "dispatched_at", "reason", "reference", "accepted_at")
# Bind names must differ from column names, hence the prefix.
_UPDATE_SAGA = Prepared(
    update(saga_view)
    .where(saga_view.c.id == bindparam("key"), saga_view.c.version == bindparam("expected"))
    .values({c: bindparam(f"new_{c}") for c in _SAGA_CHANGES})
)
# On PostgreSQL the same update for a whole transaction's sagas is one statement: the rows come as
# one array per parameter (unnest pairs them up again), so that the count of rows changed is the
# statement's own (asyncpg counts none for an executemany) and the text is the same for any count.
# One dimension: a value that is itself a list (a saga's steps, JSON) is one element, not a row.
_SAGA_UPDATE_KEYS = ("key", "expected", *(f"new_{c}" for c in _SAGA_CHANGES))
_SAGA_CHANGE = (
    func.unnest(
        *(
            bindparam(key, type_=ARRAY(column.type, dimensions=1))
            for key, column in zip(
                _SAGA_UPDATE_KEYS,
                (saga_view.c.id, saga_view.c.version, *(saga_view.c[c] for c in _SAGA_CHANGES)),
                strict=True,
            )
        )
    )
    .table_valued(*_SAGA_UPDATE_KEYS)
    .render_derived(name="change")
)
_UPDATE_SAGAS = Prepared(
    update(saga_view)
    .where(saga_view.c.id == _SAGA_CHANGE.c.key, saga_view.c.version == _SAGA_CHANGE.c.expected)
    .values({c: _SAGA_CHANGE.c[f"new_{c}"] for c in _SAGA_CHANGES}),
    dialect="postgresql",
)
_UPDATE_ORDER = Prepared(
    update(order_view)
    .where(order_view.c.id == bindparam("key"))
    .values({c: bindparam(f"new_{c}") for c in _ORDER_CHANGES})
)
_UPDATE_SHIPMENT = Prepared(
    update(shipment_view)
    .where(shipment_view.c.id == bindparam("key"))
    .values({c: bindparam(f"new_{c}") for c in _SHIPMENT_CHANGES})
)
_STEP_CHANGES = ("status", "attempts", "finished_at", "duration_ms")
_UPDATE_STEP = Prepared(
    update(saga_step_view)
    .where(saga_step_view.c.saga_id == bindparam("key"), saga_step_view.c.position == bindparam("at"))
    .values({c: bindparam(f"new_{c}") for c in _STEP_CHANGES})
)
_LOAD = Prepared(
    select(journal.c.type, journal.c.version, journal.c.data)
    .where(journal.c.saga_id == bindparam("saga_id"))
    .order_by(journal.c.sequence)
)
# One lookup by primary key for both kinds of placement; a customer's key from release 0.1.0 comes
# first, as it was acknowledged before any the caller bound since (see find_placement).
_FIND_PLACEMENT = Prepared(
    select(placements)
    .where(
        or_(
            and_(placements.c.idempotency_key == bindparam("key"), placements.c.customer_scope.is_(None)),
            and_(
                placements.c.idempotency_key == bindparam("unscoped_key"),
                placements.c.customer_scope == bindparam("customer_id"),
            ),
        )
    )
    .order_by(placements.c.customer_scope.is_(None))
    .limit(1)
)


# SQLite's positions: the counter's upsert, written out so that it runs prepared like the journal's
# rows (Prepared takes no RETURNING of SQLAlchemy's making). An upsert rather than an update of a
# seeded row, so that a database emptied by hand (or by a test) still counts on from 0.
_TAKE_POSITIONS = Prepared(
    text(
        "INSERT INTO journal_head (id, position) VALUES (1, :count) ON CONFLICT (id) "
        "DO UPDATE SET position = (journal_head.position + excluded.position) RETURNING position"
    ).columns(position=BigInteger()),
    dialect="sqlite",
)
# On PostgreSQL a transaction's journal entries are inserted with their positions, by one statement
# right before COMMIT: the counter's upsert takes the positions and the row lock, the INSERT writes
# the entries numbered in the order of the arrays (WITH ORDINALITY), and the statement answers the
# last position taken and how many entries it wrote. So the entries are never written twice (an
# insert without a position, then an UPDATE of the indexed position, a new row version and index
# entries each), and their rows go in the same round trip as the numbering. The arrays keep the text
# the same for any count, so asyncpg prepares it once. Every column of the journal but the position
# comes from the entry's own array, so the statement follows the table. The commit's notices to the
# other processes (persistence/fleet/notifications.py) go in the same statement: a NOTIFY is
# delivered when its transaction commits, wherever in it it was sent.
_ENTRY_KEYS = tuple(column.key for column in journal.columns if column.key != "position")


def _enter_and_number() -> Prepared:
    count = bindparam("count", type_=BigInteger())
    taking = pg_insert(journal_head).values(id=literal_column("1"), position=count)
    head = (
        taking.on_conflict_do_update(
            index_elements=[journal_head.c.id],
            set_={"position": journal_head.c.position + taking.excluded.position},
        )
        .returning(journal_head.c.position)
        .cte("head")
    )
    entry = (
        func.unnest(*(bindparam(key, type_=ARRAY(journal.c[key].type, dimensions=1)) for key in _ENTRY_KEYS))
        .table_valued(*_ENTRY_KEYS, with_ordinality="ordinal")
        .render_derived(name="entry")
    )
    numbered = select(*(entry.c[key] for key in _ENTRY_KEYS), head.c.position - count + entry.c.ordinal)
    entered = (
        insert(journal)
        .from_select([*_ENTRY_KEYS, journal.c.position.key], numbered.select_from(head.join(entry, true())))
        .returning(literal_column("1"))
        .cte("entered")
    )
    written = select(func.count()).select_from(entered).scalar_subquery()
    # A WITH that only reads runs when it is read: counting the notices sent is what sends them.
    sent = select(func.count()).select_from(SENDING.cte("notified")).scalar_subquery()
    answer = select(head.c.position.label("last"), written.label("entered"), sent.label("notified"))
    return Prepared(answer, dialect="postgresql")


_ENTER_AND_NUMBER = _enter_and_number()
_INSERT = {
    table: Prepared(insert(table))
    for table in (journal, placements, saga_timeline, saga_view, order_view, saga_step_view, shipment_view)
}


class SagaWrites:
    """One transaction's appends, projections and placements, not yet sent."""

    def __init__(self, db: Db) -> None:
        self._db = db
        # Set by the store when this process is one of several over PostgreSQL (leases, notices).
        self.lease_book: LeaseBook | None = None
        self._clear()

        # The timeline rows of every event appended in this transaction, written with their positions
        # when it seals.
        self.timeline: list[dict[str, Any]] = []
        # PostgreSQL: the journal entries appended so far, inserted with their positions when it
        # seals, and the notices of its commit, sent then.
        self.entries: list[dict[str, Any]] = []
        self.notices: list[CommitNotice] = []
        # SQLite: the positions of the entries inserted so far, by saga id and sequence.
        self.positions: dict[tuple[str, int], int] = {}

    def _clear(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.new_sagas: list[dict[str, Any]] = []
        self.new_orders: list[dict[str, Any]] = []
        self.new_steps: list[dict[str, Any]] = []
        self.new_shipments: list[dict[str, Any]] = []
        self.saga_updates: list[dict[str, Any]] = []
        self.order_updates: list[dict[str, Any]] = []
        self.step_updates: list[dict[str, Any]] = []
        self.shipment_updates: list[dict[str, Any]] = []
        self.placements: dict[str, Placement] = {}
        self.leases: dict[str, bool] = {}

    def gathered(self) -> int:
        pending = (self.events, self.new_sagas, self.new_orders, self.new_steps, self.new_shipments)
        updates = (self.saga_updates, self.order_updates, self.step_updates, self.shipment_updates)
        kept = (self.placements, self.leases, self.notices, self.timeline, self.entries)
        return sum(len(writes) for writes in (*pending, *updates, *kept))

    async def flush(self) -> None:
        db = self._db
        with _clashes():
            if self.events:
                if db.dialect.name == "postgresql":
                    self.entries += self.events  # inserted, numbered, when the transaction seals
                else:
                    await self._number_as_written()
                    await db.execute(_INSERT[journal], self.events)
            if self.placements:
                rows = [vars_of(p) for p in self.placements.values()]
                await db.execute(_INSERT[placements], rows)
            # On PostgreSQL the entries' keys are not written until the seal, so until then each
            # saga's read-model row is what a writer behind another meets first: its insert (a new
            # saga, keyed by the saga's id) and its update checked against the version the append
            # was made from come before any other row of the read model, and their clash or wait is
            # the same conflict as at the journal's key.
            if self.new_sagas:
                await db.execute(_INSERT[saga_view], self.new_sagas)
            if self.saga_updates:
                await self._update_sagas(self.saga_updates)
        for table, rows in (
            (order_view, self.new_orders),
            (saga_step_view, self.new_steps),
            (shipment_view, self.new_shipments),
        ):
            if rows:
                await db.execute(_INSERT[table], rows)
        for statement, rows in (
            (_UPDATE_ORDER, self.order_updates),
            (_UPDATE_STEP, self.step_updates),
            (_UPDATE_SHIPMENT, self.shipment_updates),
        ):
            if rows:
                await db.execute(statement, rows)
        if self.lease_book is not None and self.leases:
            await self.lease_book.write(db, self.leases)
        self._clear()

    async def seal(self) -> None:
        """Write this transaction's timeline rows with their events' positions: the last statements
        before COMMIT. On PostgreSQL the entries are inserted and numbered here, as the counter's row
        lock is held from here until the commit ends; on SQLite they took their positions as they
        were inserted."""
        rows, self.timeline = self.timeline, []
        entries, self.entries = self.entries, []
        notices, self.notices = self.notices, []
        if notices and not entries:
            raise RuntimeError("commit notices without the journal entries they announce")
        db = self._db
        if entries:  # PostgreSQL
            # The entries' keys are inserted under the counter's lock, after any other writer's
            # entries (inserted under it too) have committed: a clash never waits, and a wait that
            # failed is for the counter, which the runner retries as contention.
            with _clashes(waits=False):
                _number(entries, await self._enter_and_number(entries, notices))
            positions = {(e["saga_id"], e["sequence"]): e["position"] for e in entries}
        else:  # SQLite: each row takes the position its entry was inserted with
            positions, self.positions = self.positions, {}
        if not rows:
            return
        try:
            for row in rows:
                row["position"] = positions[row["saga_id"], row["sequence"]]
        except KeyError as missing:
            raise RuntimeError(f"a timeline row without a journal entry: {missing}") from None
        await db.execute(_INSERT[saga_timeline], rows)

    async def _number_as_written(self) -> None:
        """SQLite: take positions for the entries about to be inserted, in the order they were
        appended, and keep them for their timeline rows."""
        events = self.events
        taken = (await self._db.execute(_TAKE_POSITIONS, {"count": len(events)})).first()
        _number(events, int(taken.position))
        self.positions.update(((e["saga_id"], e["sequence"]), e["position"]) for e in events)

    async def _enter_and_number(self, entries: list[dict[str, Any]], notices: list[CommitNotice]) -> int:
        """PostgreSQL: take positions for `entries` (this transaction's journal entries, in the order
        they are numbered), insert them so numbered and send `notices`, in one statement; the last
        position taken."""
        parameters = {
            "count": len(entries),
            **{key: [e[key] for e in entries] for key in _ENTRY_KEYS},
            "payloads": [n.payload() for n in notices],
        }
        answer = (await self._db.execute(_ENTER_AND_NUMBER, parameters)).first()
        last, entered, notified = int(answer.last), int(answer.entered), int(answer.notified)
        if (entered, notified) != (len(entries), len(notices)):
            raise RuntimeError(
                f"entered {entered} journal entries of the {len(entries)} this transaction appended "
                f"and sent {notified} notices of {len(notices)}"
            )
        return last

    async def _update_sagas(self, updates: list[dict[str, Any]]) -> None:
        # The version in the WHERE clause guards the read model as the journal's key guards the log.
        db = self._db
        if db.dialect.name == "postgresql":
            changed = 0
            for round_ in _rounds(updates):
                arrays = {key: [row[key] for row in round_] for key in _SAGA_UPDATE_KEYS}
                changed += (await db.execute(_UPDATE_SAGAS, arrays)).rowcount
        else:  # SQLite: its executemany counts every row it changed
            changed = (await db.execute(_UPDATE_SAGA, updates)).rowcount
        if changed != len(updates):
            raise ConcurrencyConflict("a saga's read model moved on under this transaction")


@contextmanager
def _clashes(waits: bool = True) -> Iterator[None]:
    """Journal entries or placements being written: a key clash is another writer first. `waits`:
    a lock wait that failed is another writer too (the statement may wait for a key another
    transaction inserted); otherwise it is left to the runner's retries, as contention."""
    try:
        yield
    except IntegrityError as clash:
        # Only a second entry at a saga's sequence, or a second placement of a key, is another
        # writer first; any other violation is a fault, reported as it is, never retried.
        if is_key_clash(clash, journal) or is_key_clash(clash, saga_view):
            raise ConcurrencyConflict("another writer appended to the same saga first") from clash
        if is_key_clash(clash, placements):
            raise ConcurrencyConflict("another request bound the same idempotency key first") from clash
        raise
    except DBAPIError as waited:
        # Another writer (another process, say) holds the same key and has not committed yet.
        if waits and getattr(waited.orig, "sqlstate", None) in LOCK_CONFLICTS:
            raise ConcurrencyConflict("another writer is appending to the same saga") from waited
        raise


def _rounds(updates: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`updates` in order, cut where a saga comes again: one statement changes a row once, so the
    second update of a saga (expecting the version the first one wrote) goes in the next round."""
    rounds: list[list[dict[str, Any]]] = [[]]
    seen: set[str] = set()
    for row in updates:
        if row["key"] in seen:
            rounds.append([])
            seen.clear()
        seen.add(row["key"])
        rounds[-1].append(row)
    return rounds


def _number(rows: list[dict[str, Any]], last: int) -> None:
    """Give `rows` the positions that end at `last`, in their order."""
    for position, row in enumerate(rows, start=last - len(rows) + 1):
        row["position"] = position


def vars_of(placement: Placement) -> dict[str, str]:
    return {
        "idempotency_key": placement.idempotency_key,
        "fingerprint": placement.fingerprint,
        "saga_id": placement.saga_id,
        "order_id": placement.order_id,
    }


class SqlSagaStore:
    def __init__(self, db: Db, lease_book: LeaseBook | None = None) -> None:
        self._db = db
        self._writes = db.deferred(SagaWrites)
        self._writes.lease_book = lease_book

    async def load(self, saga_id: str) -> list[SagaEvent]:
        await self._writes.flush()
        rows = await self._db.execute(_LOAD, {"saga_id": saga_id})
        stored = [codec.decode(row.type, row.version, row.data) for row in rows]
        # On PostgreSQL this transaction's own entries are inserted only as it seals: read as stored.
        pending = self._writes.entries
        return stored + [
            codec.decode(e["type"], e["version"], e["data"]) for e in pending if e["saga_id"] == saga_id
        ]

    async def find_placement(
        self, idempotency_key: str, unscoped_key: str | None = None, customer_id: str | None = None
    ) -> Placement | None:
        """See SagaStore.find_placement. Both kinds are found in one statement, by primary key, so a
        key never bound costs the same single read it did before 0.1.0 keys were looked for."""
        pending = self._writes.placements.get(idempotency_key)
        if pending is not None:
            return pending  # only keys scoped to a caller are ever bound, so only these are pending
        keys = {"key": idempotency_key, "unscoped_key": unscoped_key, "customer_id": customer_id}
        row = (await self._db.execute(_FIND_PLACEMENT, keys)).first()
        return (
            None
            if row is None
            else Placement(row.idempotency_key, row.fingerprint, row.saga_id, row.order_id)
        )

    async def append(self, change: SagaChange, placement: Placement | None) -> None:
        writes, before, after = self._writes, change.before, change.after
        for sequence, event in enumerate(change.events, start=change.first_sequence):
            type_name, version, data = codec.encode(event)
            writes.events.append(
                {
                    "saga_id": after.saga_id,
                    "sequence": sequence,
                    "type": type_name,
                    "version": version,
                    "data": data,
                    "recorded_at": event.at,
                }
            )
        writes.timeline.extend(timeline_rows(change))
        if placement is not None:
            writes.placements[placement.idempotency_key] = placement
        if writes.lease_book is not None:
            lease = lease_change(before, after)
            if lease is not None:
                writes.leases[after.saga_id] = lease
            first = change.first_sequence
            notice = CommitNotice(
                writes.lease_book.fleet.instance, after.saga_id, first, after.version, after.status
            )
            writes.notices.append(notice)
        self._project_steps(before, after)
        shown_before = {row["id"]: row for row in shipment_rows(before)} if before else {}
        for shipment in shipment_rows(after):
            earlier = shown_before.get(shipment["id"])
            if earlier is None:
                writes.new_shipments.append(shipment)
            elif shipment != earlier:
                writes.shipment_updates.append(
                    {"key": shipment["id"], **{f"new_{c}": shipment[c] for c in _SHIPMENT_CHANGES}}
                )
        saga, order = saga_row(after), order_row(after)
        if before is None:
            writes.new_sagas.append(saga)
            writes.new_orders.append(order)
            return
        writes.saga_updates.append(
            {"key": after.saga_id, "expected": before.version, **{f"new_{c}": saga[c] for c in _SAGA_CHANGES}}
        )
        if order != order_row(before):
            writes.order_updates.append(
                {"key": after.order_id, **{f"new_{c}": order[c] for c in _ORDER_CHANGES}}
            )

    def _project_steps(self, before: SagaState | None, after: SagaState) -> None:
        # A transaction changes the last step (another attempt, its end) and may start new ones.
        known = {row["position"]: row for row in step_rows(before)} if before else {}
        for row in step_rows(after):
            if row["position"] not in known:
                self._writes.new_steps.append(row)
            elif known[row["position"]] != row:
                self._writes.step_updates.append(
                    {
                        "key": row["saga_id"],
                        "at": row["position"],
                        **{f"new_{c}": row[c] for c in _STEP_CHANGES},
                    }
                )
