"""The saga's participants as local transactions on their own tables: orders, inventory, shipments.

Each acts at most once per command: a repeated command id finds what the first one did (the
reservation row, the shipment row) or meets a transition that is already made (a confirmed order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, literal, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from domain.model.allocation import Shortfall, StockSlot, allocate
from domain.model.saga import Outcome, Rejected, ShipmentStatus, Succeeded, Unavailable
from domain.model.values import MovementKind, OrderStatus, Pick, StorageCondition
from domain.orchestration.attempts import jittered_pause
from domain.ports import ConcurrencyConflict, StepCommand
from persistence.connection import Db, GatheredRows
from persistence.metrics import StoreMetrics
from persistence.prepared import Prepared
from persistence.read.projection import picks_from_json, picks_json
from persistence.tables import orders, products, reservations, sections, shipments, stock
from persistence.write import movements
from persistence.write.movements import pick_movements
from persistence.write.stock_locks import Locking, StockBusy

# A reservation whose rows moved under it re-reads and tries again this many times, after a jittered
# pause from this long, doubling (jittered_pause), before it reports a transient failure (never a
# shortage).
RESERVE_ATTEMPTS = 5
RESERVE_BACKOFF_S = 0.002

# Statements are built once: building and keying a statement per call costs more than running it;
# the hot ones are prepared for the driver (persistence/prepared.py).
_CREATE_ORDER = Prepared(insert(orders))
_SET_ORDER_STATUS = Prepared(
    update(orders)
    .where(orders.c.id == bindparam("order_id"), orders.c.status.in_(bindparam("allowed", expanding=True)))
    .values(status=bindparam("status"), updated_at=bindparam("at"))
)


class _NewOrders(GatheredRows):
    """A transaction's new orders, inserted by one statement: a commit of many placements sends them
    at once. Flushed before anything in the transaction changes an order (`SqlOrders._set_status`);
    nothing else in a write reads the orders table."""

    STATEMENT = _CREATE_ORDER


class SqlOrders:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def create_order(self, command: StepCommand) -> None:
        self._db.deferred(_NewOrders).rows.append(
            {
                "id": command.order_id,
                "customer_id": command.customer_id,
                "status": OrderStatus.PENDING.value,
                "lines": [{"sku": line.sku, "quantity": line.quantity} for line in command.lines],
                "created_at": command.at,
                "updated_at": command.at,
            },
        )

    async def confirm_order(self, command: StepCommand) -> Outcome:
        confirmed = await self._set_status(
            command, OrderStatus.CONFIRMED, (OrderStatus.PENDING, OrderStatus.CONFIRMED)
        )
        return Succeeded() if confirmed else Rejected(f"order {command.order_id} was cancelled")

    async def cancel_order(self, command: StepCommand) -> Outcome:
        # A shipped order is never cancelled: the saga refuses the cancellation of a dispatched one.
        cancellable = (OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.CANCELLED)
        await self._set_status(command, OrderStatus.CANCELLED, cancellable)
        return Succeeded()

    async def ship_order(self, command: StepCommand, completely: bool) -> None:
        status = OrderStatus.SHIPPED if completely else OrderStatus.PARTIALLY_SHIPPED
        if not await self._set_status(
            command, status, (OrderStatus.CONFIRMED, OrderStatus.PARTIALLY_SHIPPED)
        ):
            raise ConcurrencyConflict(f"order {command.order_id} is no longer confirmed")

    async def _set_status(
        self, command: StepCommand, status: OrderStatus, allowed: tuple[OrderStatus, ...]
    ) -> bool:
        await self._db.deferred(_NewOrders).flush()
        result = await self._db.execute(
            _SET_ORDER_STATUS,
            {
                "order_id": command.order_id,
                "allowed": [s.value for s in allowed],
                "status": status.value,
                "at": command.at,
            },
        )
        return result.rowcount == 1


# A conditional write rather than a compare-and-swap on the row's version: the condition is
# what must hold (enough available), so a row that another reservation changed meanwhile still takes
# this one if it has enough left. (On PostgreSQL the reservation read its rows locked, so there the
# condition holds; on SQLite the one writer has read them in this transaction.)
_IF_AVAILABLE = (
    update(stock)
    .where(
        stock.c.warehouse_code == bindparam("w"),
        stock.c.section_code == bindparam("s"),
        stock.c.sku == bindparam("k"),
        stock.c.on_hand - stock.c.reserved >= bindparam("q"),
    )
    .values(reserved=stock.c.reserved + bindparam("q"), version=stock.c.version + 1)
)
_RESERVE_IF_AVAILABLE = Prepared(_IF_AVAILABLE)
# On PostgreSQL every pick of a reservation is taken by one statement, all or none: a row short of
# its pick (or gone) makes the statement change nothing, so no savepoint is needed to undo the
# picks already taken. The reservation holds every row locked (it read them so), so what the check
# reads is what the update changes; the update's own condition still refuses to oversell. The same
# statement records the reservation when, and only when, every pick was taken (the update runs
# first, as a WITH, to its end), so a reservation is one round trip for its stock and its row. A
# reservation of one pick, the commonest, takes it with the plain conditional write above, which
# has no check of other rows to make.
_PICK_KEYS = ("w", "s", "k", "q")
_PICK_ARRAYS = [
    bindparam(f"{key}s", type_=ARRAY(column.type, dimensions=1))
    for key, column in zip(
        _PICK_KEYS, (stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.reserved), strict=True
    )
]


def _picks(name: str) -> Any:
    return func.unnest(*_PICK_ARRAYS).table_valued(*_PICK_KEYS).render_derived(name=name)


_RESERVATION_KEYS = ("id", "order_id", "picks", "created_at")  # what a reservation is recorded with


def _recording(taking: Any, picks: Any) -> Prepared:
    """An INSERT of the reservation's row that runs `taking` (the UPDATE of its stock) first and
    writes the row only if that changed `picks` rows."""
    taken = taking.returning(literal_column("1")).cte("taken")
    every_pick = select(func.count()).select_from(taken).scalar_subquery() == picks
    row = select(*(bindparam(key, type_=reservations.c[key].type) for key in _RESERVATION_KEYS))
    recorded = insert(reservations).from_select(list(_RESERVATION_KEYS), row.where(every_pick))
    return Prepared(recorded.add_cte(taken), dialect="postgresql")


def _reserve_all_and_record() -> Prepared:
    pick, wanted, slot = _picks("pick"), _picks("wanted"), stock.alias("slot")

    def of(row: Any, picked: Any) -> Any:
        return and_(
            row.c.warehouse_code == picked.c.w, row.c.section_code == picked.c.s, row.c.sku == picked.c.k
        )

    short = (
        select(literal(1))
        .select_from(wanted.outerjoin(slot, of(slot, wanted)))
        .where(or_(slot.c.sku.is_(None), slot.c.on_hand - slot.c.reserved < wanted.c.q))
    )
    taking = (
        update(stock)
        .where(of(stock, pick), stock.c.on_hand - stock.c.reserved >= pick.c.q, ~exists(short))
        .values(reserved=stock.c.reserved + pick.c.q, version=stock.c.version + 1)
    )
    return _recording(taking, func.cardinality(_PICK_ARRAYS[0]))


_RESERVE_ALL_AND_RECORD = _reserve_all_and_record()
_RESERVE_AND_RECORD = _recording(_IF_AVAILABLE, 1)
_PICKED_ROW = update(stock).where(
    stock.c.warehouse_code == bindparam("w"),
    stock.c.section_code == bindparam("s"),
    stock.c.sku == bindparam("k"),
)
# A released pick is available again; a dispatched one has left the section.
_RESTORE = Prepared(
    _PICKED_ROW.values(reserved=stock.c.reserved - bindparam("q"), version=stock.c.version + 1)
)
_TAKE_AWAY = Prepared(
    _PICKED_ROW.values(
        on_hand=stock.c.on_hand - bindparam("q"),
        reserved=stock.c.reserved - bindparam("q"),
        version=stock.c.version + 1,
    )
)


# Released or dispatched picks lock their SKUs' rows first, as a reservation does.
_LOCK_SKUS = Locking(
    select(stock.c.sku)
    .where(stock.c.sku.in_(bindparam("skus", expanding=True)))
    .order_by(stock.c.sku, stock.c.warehouse_code, stock.c.section_code)
)
_STOCK_OF_SKUS = (
    select(
        stock.c.warehouse_code,
        stock.c.section_code,
        stock.c.sku,
        stock.c.on_hand,
        stock.c.reserved,
        sections.c.storage_condition,
        products.c.storage_condition.label("product_condition"),
    )
    .join(
        sections,
        and_(sections.c.warehouse_code == stock.c.warehouse_code, sections.c.code == stock.c.section_code),
    )
    .join(products, products.c.sku == stock.c.sku)
    .where(stock.c.sku.in_(bindparam("skus", expanding=True)))
)
_READ_STOCK = Prepared(_STOCK_OF_SKUS)
_RESERVATION_PICKS = select(reservations.c.picks).where(reservations.c.id == bindparam("id"))
_FIND_RESERVATION = Prepared(_RESERVATION_PICKS)
# On PostgreSQL the rows are read locked, in key order, so what is allocated is what the swap finds
# and no other transaction's reservation can interleave with this one; a held row raises StockBusy
# (persistence/write/stock_locks.py) rather than hold up the other sagas of a shared commit. Each row
# also carries the picks of the command's reservation if it was made already (`done`, null if not),
# so that finding out costs no round trip of its own.
_LOCK_STOCK = Locking(
    _STOCK_OF_SKUS.add_columns(_RESERVATION_PICKS.scalar_subquery().label("done")).order_by(
        stock.c.sku, stock.c.warehouse_code, stock.c.section_code
    ),
    of=stock,
)
_READ_CONDITIONS = Prepared(
    select(products.c.sku, products.c.storage_condition).where(
        products.c.sku.in_(bindparam("skus", expanding=True))
    )
)
_RECORD_RESERVATION = Prepared(insert(reservations))
_HELD = (reservations.c.released_at.is_(None), reservations.c.dispatched_at.is_(None))
# What ending a reservation does to its picks' stock: released, or gone with a shipment.
_ENDINGS = {MovementKind.RELEASE: _RESTORE, MovementKind.DISPATCH: _TAKE_AWAY}


class SqlInventory:
    def __init__(self, db: Db, metrics: StoreMetrics) -> None:
        self._db = db
        self._metrics = metrics

    async def reserve_stock(self, command: StepCommand) -> Outcome:
        skus = sorted({line.sku for line in command.lines})
        read: _Stock | None = None
        if self._db.dialect.name == "sqlite":
            done = await self._made(command.reservation_id)
        else:  # PostgreSQL: a reservation made already is found with the stock's rows
            try:
                read = await self._read(skus, command.reservation_id)
            except StockBusy as busy:
                # A reservation made already reads no stock, so it waits for no stock row.
                made = None if busy.failed else await self._made(command.reservation_id)
                if made is None:
                    # Counted as an attempt that read its stock (one failed in its transaction
                    # cannot look, and is counted so too).
                    self._metrics.stock_reservations += 1
                    raise
                read = _Stock([], {}, made)
            done = read.done
        if done is not None:
            return Succeeded(picks=done)
        self._metrics.stock_reservations += 1
        for attempt in range(1, RESERVE_ATTEMPTS + 1):
            if attempt > 1:
                await self._db.pause(jittered_pause(RESERVE_BACKOFF_S, attempt - 1))
            if read is None or attempt > 1:
                read = await self._read(skus)
            slots, conditions = read.slots, read.conditions
            result = allocate(command.lines, slots, conditions)
            if isinstance(result, Shortfall):
                return Rejected(result.describe())
            if await self._take(command, result.picks):
                reserved = pick_movements(
                    result.picks, MovementKind.RESERVATION, command.at, command.order_id
                )
                await movements.record(self._db, reserved)
                return Succeeded(picks=result.picks)
            self._metrics.stock_conflicts += 1
        self._metrics.stock_conflicts_exhausted += 1
        return Unavailable(
            f"stock for order {command.order_id} stayed contended after {RESERVE_ATTEMPTS} attempts"
        )

    async def release_stock(self, command: StepCommand) -> Outcome:
        await self._release(command)
        return Succeeded()

    async def dispatch_stock(self, command: StepCommand) -> None:
        # The first shipment dispatched marks the reservation, which is never released after that;
        # each shipment's own picks leave (the shipment's status keeps one from leaving twice).
        marked = await self._db.execute(
            update(reservations)
            .where(reservations.c.id == command.reservation_id, reservations.c.released_at.is_(None))
            .values(dispatched_at=func.coalesce(reservations.c.dispatched_at, command.at))
        )
        if marked.rowcount != 1:
            # Another transaction released it after this one read the saga's journal.
            raise ConcurrencyConflict(f"the reservation of order {command.order_id} is no longer held")
        await self._move(command.picks, MovementKind.DISPATCH, command.at, command.shipment_id)

    async def _release(self, command: StepCommand) -> None:
        """If the command's reservation is still held, mark it released (now), make the stock of its
        picks available again and record the movements.

        Marking first makes a second release (a retry, another process, which waits for this one's
        row lock) find nothing held: stock moves exactly once."""
        released = await self._db.execute(
            update(reservations)
            .where(reservations.c.id == command.reservation_id, *_HELD)
            .values(released_at=command.at)
            .returning(reservations.c.picks)
        )
        row = released.first()
        if row is not None:
            await self._move(picks_from_json(row.picks), MovementKind.RELEASE, command.at, command.order_id)

    async def _move(
        self, picks: tuple[Pick, ...], how: MovementKind, at: datetime, reference: str | None
    ) -> None:
        ordered = sorted(picks, key=_pick_key)
        skus = sorted({p.sku for p in ordered})
        await _LOCK_SKUS.hold(self._db, {"skus": skus}, skus[0])
        await self._db.execute(_ENDINGS[how], [_params(p) for p in ordered])
        await movements.record(self._db, pick_movements(ordered, how, at, reference))

    async def _made(self, reservation_id: str | None) -> tuple[Pick, ...] | None:
        """The picks of the reservation made under this id, if it was made."""
        made = (await self._db.execute(_FIND_RESERVATION, {"id": reservation_id})).first()
        return None if made is None else picks_from_json(made.picks)

    async def _read(self, skus: list[str], reservation_id: str | None = None) -> _Stock:
        """The stock of `skus` and their products' storage conditions; on PostgreSQL with their rows
        locked and, given `reservation_id`, the picks of that reservation if it was made already."""
        rows: Sequence[Any]
        done = None
        if self._db.dialect.name == "sqlite":
            rows = list(await self._db.execute(_READ_STOCK, {"skus": skus}))
        else:
            rows = await _LOCK_STOCK.take(self._db, {"skus": skus, "id": reservation_id}, skus[0])
            if reservation_id is not None and rows:
                done = None if rows[0].done is None else picks_from_json(rows[0].done)
            elif reservation_id is not None:  # no row of stock to carry it: looked for alone
                done = await self._made(reservation_id)
        slots, conditions = [], {}
        for r in rows:
            condition = StorageCondition(r.storage_condition)
            conditions[r.sku] = StorageCondition(r.product_condition)
            available = r.on_hand - r.reserved
            slots.append(StockSlot(r.warehouse_code, r.section_code, r.sku, condition, available))
        if done is None and len(conditions) < len(skus):
            missing = set(skus) - conditions.keys()
            conditions.update(await self._conditions(sorted(missing)))
        return _Stock(slots, conditions, done)

    async def _conditions(self, skus: list[str]) -> dict[str, StorageCondition]:
        rows = await self._db.execute(_READ_CONDITIONS, {"skus": skus})
        return {r.sku: StorageCondition(r.storage_condition) for r in rows}

    async def _take(self, command: StepCommand, picks: tuple[Pick, ...]) -> bool:
        """Take every pick from its row if the row still has enough, or none of them, and if every
        one was taken record the command's reservation of them; whether it was."""
        reservation = {
            "id": command.reservation_id,
            "order_id": command.order_id,
            "picks": picks_json(picks),
            "created_at": command.at,
        }
        if self._db.dialect.name == "postgresql":
            # One statement, all or none, the reservation's row with them (_RESERVE_AND_RECORD).
            if len(picks) == 1:
                recorded = await self._db.execute(_RESERVE_AND_RECORD, {**_params(picks[0]), **reservation})
            else:
                arrays = {f"{key}s": [_params(p)[key] for p in picks] for key in _PICK_KEYS}
                recorded = await self._db.execute(_RESERVE_ALL_AND_RECORD, {**arrays, **reservation})
            return recorded.rowcount == 1
        if not await self._swap(picks):
            return False
        await self._db.execute(_RECORD_RESERVATION, reservation)
        return True

    async def _swap(self, picks: tuple[Pick, ...]) -> bool:
        """SQLite: take every pick from its row if the row still has enough, in key order, or none
        of them."""
        # A savepoint undoes the swaps already made when a later one misses. The rows were read in
        # this transaction, which SQLite's one writer holds the database for, so no swap waits for
        # a lock, and a single swap changes one row or nothing: it needs none, which spares two
        # statements on the commonest reservation.
        savepoint = await self._db.begin_nested() if len(picks) > 1 else None
        for pick in sorted(picks, key=_pick_key):
            taken = await self._db.execute(_RESERVE_IF_AVAILABLE, _params(pick))
            if taken.rowcount != 1:
                if savepoint is not None:
                    await savepoint.rollback()
                return False
        if savepoint is not None:
            await savepoint.commit()
        return True


@dataclass(frozen=True, slots=True)
class _Stock:
    """What a reservation reads: the SKUs' stock, their products' storage conditions and, when asked
    for (PostgreSQL), the picks of the command's reservation if it was made already."""

    slots: list[StockSlot]
    conditions: dict[str, StorageCondition]
    done: tuple[Pick, ...] | None = None


def _pick_key(pick: Pick) -> tuple[str, str, str]:
    # SKU first: the commit runner orders a batch's work by the first SKU each may lock, so rows
    # are taken SKU by SKU across a whole batch, and two batches wait for each other in one order.
    return pick.sku, pick.warehouse_code, pick.section_code


def _params(pick: Pick) -> dict[str, object]:
    return {"w": pick.warehouse_code, "s": pick.section_code, "k": pick.sku, "q": pick.quantity}


_FIND_SHIPMENT = Prepared(select(shipments.c.status).where(shipments.c.id == bindparam("id")))
# A shipment already made under the command's id is left as it is: the insert and the check that it
# is not there yet are one statement (one round trip on PostgreSQL), by database.
_CREATE_SHIPMENT = {
    name: Prepared(make(shipments).on_conflict_do_nothing(index_elements=[shipments.c.id]), dialect=name)
    for name, make in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}
_SET_SHIPMENT_STATUS = Prepared(
    update(shipments)
    .where(shipments.c.id == bindparam("shipment_id"), shipments.c.status == ShipmentStatus.CREATED.value)
    .values(status=bindparam("new_status"), dispatched_at=bindparam("at"))
)


class SqlShipments:
    """The built-in warehouse: one shipment per command, under the id the saga gave it (which the
    shipment's commands carry on every attempt), so a repeated command finds the shipment it made."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def create_shipment(self, command: StepCommand) -> Outcome:
        await self._db.execute(
            _CREATE_SHIPMENT[self._db.dialect.name],
            {
                "id": _shipment_of(command),
                "order_id": command.order_id,
                "warehouse_code": command.warehouse_code,
                "picks": picks_json(command.picks),
                "created_at": command.at,
                "status": ShipmentStatus.CREATED.value,
            },
        )
        return Succeeded()

    async def cancel_shipment(self, command: StepCommand) -> Outcome:
        if await self._set_status(command, ShipmentStatus.CANCELLED, None):
            return Succeeded()
        existing = (await self._db.execute(_FIND_SHIPMENT, {"id": _shipment_of(command)})).first()
        if existing is not None and existing.status == ShipmentStatus.DISPATCHED.value:
            return Rejected(f"shipment {command.shipment_id} of order {command.order_id} was dispatched")
        return Succeeded()  # cancelled already, or never created: nothing to undo

    async def dispatch_shipment(self, command: StepCommand) -> None:
        if await self._set_status(command, ShipmentStatus.DISPATCHED, command.at):
            return
        if (await self._db.execute(_FIND_SHIPMENT, {"id": _shipment_of(command)})).first() is None:
            return  # a remote warehouse's shipment: this one never held it
        raise ConcurrencyConflict(f"shipment {command.shipment_id} is no longer waiting to be dispatched")

    async def _set_status(self, command: StepCommand, status: ShipmentStatus, at: datetime | None) -> bool:
        """Move the command's created shipment to `status`; False if it is not waiting (any more)."""
        params = {"shipment_id": _shipment_of(command), "new_status": status.value, "at": at}
        return (await self._db.execute(_SET_SHIPMENT_STATUS, params)).rowcount == 1


def _shipment_of(command: StepCommand) -> str:
    if command.shipment_id is None:
        raise ValueError(f"command {command.command_id} names no shipment")
    return command.shipment_id
