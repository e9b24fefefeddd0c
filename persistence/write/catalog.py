"""Inventory administration: warehouses with their sections, products, stock receipts and adjustments.

Each command checks what only the database can tell (does it exist, does the condition suit, does
the stock still fit a 32-bit count) and either changes everything it was asked to or nothing,
returning the problems found.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    text,
    update,
)

from domain.model.problems import MAX_COUNT, Problem, ProblemCode
from domain.model.values import MovementKind, StorageCondition
from persistence.connection import Db, upsert
from persistence.tables import products, sections, stock, warehouses
from persistence.write import movements
from persistence.write.movements import movement
from persistence.write.stock_locks import Locking

# On PostgreSQL a write to a section's stock locks its row before anything else, then, to add, the
# product's row, on which additions of one SKU to different sections take turns, so that the total
# checked is the total they add to. Neither waits in a shared commit (persistence/write/stock_locks.py).
_LOCK_SECTION = Locking(
    select(stock.c.sku).where(
        stock.c.warehouse_code == bindparam("w"),
        stock.c.section_code == bindparam("s"),
        stock.c.sku == bindparam("k"),
    )
)
_LOCK_PRODUCT = Locking(select(products.c.sku).where(products.c.sku == bindparam("k")))

# Processes started together on one PostgreSQL database take turns to load a catalog under this
# advisory lock ("catalog" in ASCII; any fixed number, the same in every process).
LOADING_LOCK = int.from_bytes(b"catalog", "big")


async def empty_for_loading(conn: Db) -> bool:
    """Whether no warehouse is registered yet, asked by a transaction that loads a catalog if so.
    Such transactions take turns: on PostgreSQL this waits (under an advisory lock held until the
    transaction ends) for the one before to end, so each sees what the others loaded and a catalog
    is loaded once; SQLite writes one transaction at a time anyway. On PostgreSQL a wait past the
    writer's lock_timeout raises its lock_not_available error, which the transaction runner retries."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOADING_LOCK})
    return (await conn.execute(select(warehouses.c.code).limit(1))).first() is None


async def register_warehouse(
    conn: Db,
    code: str,
    name: str,
    new_sections: list[tuple[str, StorageCondition]],
    service_url: str | None = None,
) -> list[Problem]:
    if not await _inserted(conn, warehouses, code=code, name=name, service_url=service_url):
        return [Problem(ProblemCode.DUPLICATE_WAREHOUSE, "code", f"warehouse {code} already exists")]
    if new_sections:
        await conn.execute(
            insert(sections),
            [{"warehouse_code": code, "code": s, "storage_condition": c.value} for s, c in new_sections],
        )
    return []


async def update_warehouse(conn: Db, code: str, changes: dict[str, str | None]) -> list[Problem]:
    """Change a warehouse's `name` and or `service_url` (None: none of its own), as `changes` names
    them; UNKNOWN_WAREHOUSE if there is no such warehouse."""
    if changes:
        found = (
            await conn.execute(update(warehouses).where(warehouses.c.code == code).values(changes))
        ).rowcount
    else:
        found = len((await conn.execute(select(warehouses.c.code).where(warehouses.c.code == code))).all())
    if found:
        return []
    return [Problem(ProblemCode.UNKNOWN_WAREHOUSE, "code", f"no warehouse {code}")]


async def register_product(conn: Db, sku: str, name: str, condition: StorageCondition) -> list[Problem]:
    if not await _inserted(conn, products, sku=sku, name=name, storage_condition=condition.value):
        return [Problem(ProblemCode.DUPLICATE_PRODUCT, "sku", f"product {sku} already exists")]
    return []


async def _inserted(conn: Db, table: Table, **row: object) -> bool:
    """Insert `row` unless `table` has one with its key already; whether it did. One statement, so
    that of two registrations of one key at once (on PostgreSQL) the second waits for the first and
    finds its row, rather than failing on the key as a check, then an insert, would."""
    inserted = await conn.execute(upsert(conn, table).values(**row).on_conflict_do_nothing())
    return inserted.rowcount == 1


async def receive_stock(
    conn: Db, sku: str, warehouse_code: str, section_code: str, quantity: int, at: datetime
) -> list[Problem]:
    """Goods came in: `quantity` more on hand in the section, recorded as a RECEIPT movement at `at`.
    Refused past MAX_COUNT in the section or for the product (OUT_OF_RANGE). On PostgreSQL raises
    StockBusy when the section's or the product's row is held longer than `conn` waits."""
    await _LOCK_SECTION.hold(conn, {"w": warehouse_code, "s": section_code, "k": sku}, sku)
    problems = await _check_place(conn, sku, warehouse_code, section_code)
    problems = problems or await _check_room(conn, sku, warehouse_code, section_code, quantity, "quantity")
    if problems:
        return problems
    key = _stock_row(sku, warehouse_code, section_code)
    added = await conn.execute(
        update(stock).where(*key).values(on_hand=stock.c.on_hand + quantity, version=stock.c.version + 1)
    )
    if added.rowcount == 0:
        await conn.execute(
            insert(stock).values(
                warehouse_code=warehouse_code,
                section_code=section_code,
                sku=sku,
                on_hand=quantity,
                reserved=0,
                version=1,
            )
        )
    place = (warehouse_code, section_code, sku)
    await movements.record(conn, [movement(place, MovementKind.RECEIPT, at, None, on_hand=quantity)])
    return []


async def adjust_stock(
    conn: Db, sku: str, warehouse_code: str, section_code: str, delta: int, reason: str, at: datetime
) -> list[Problem]:
    """Correct the section's on-hand by `delta` (a cycle count, damage, a write-off), recorded as an
    ADJUSTMENT movement with `reason` at `at`. Refused, changing nothing, when the section holds no
    such stock, below what is reserved there (BELOW_RESERVED) or past MAX_COUNT in the section or for
    the product (OUT_OF_RANGE). On PostgreSQL raises StockBusy when the section's or the product's
    row is held longer than `conn` waits."""
    await _LOCK_SECTION.hold(conn, {"w": warehouse_code, "s": section_code, "k": sku}, sku)
    if delta > 0:
        problems = await _check_room(conn, sku, warehouse_code, section_code, delta, "quantityDelta")
        if problems:
            return problems
    key = _stock_row(sku, warehouse_code, section_code)
    # One conditional statement, so a reservation committed meanwhile is counted, never undercut.
    # The new count is compared as a 64-bit sum: in 32 bits the comparison itself would overflow.
    after = cast(stock.c.on_hand, BigInteger) + literal(delta, BigInteger)
    adjusted = await conn.execute(
        update(stock)
        .where(*key, after >= stock.c.reserved, after <= MAX_COUNT)
        .values(on_hand=stock.c.on_hand + delta, version=stock.c.version + 1)
    )
    if adjusted.rowcount == 0:
        return await _why_not_adjusted(conn, sku, warehouse_code, section_code, delta)
    place = (warehouse_code, section_code, sku)
    await movements.record(conn, [movement(place, MovementKind.ADJUSTMENT, at, reason, on_hand=delta)])
    return []


async def _why_not_adjusted(
    conn: Db, sku: str, warehouse_code: str, section_code: str, delta: int
) -> list[Problem]:
    key = _stock_row(sku, warehouse_code, section_code)
    level = (await conn.execute(select(stock.c.on_hand, stock.c.reserved).where(*key))).first()
    if level is None:
        problems = await _check_place(conn, sku, warehouse_code, section_code)
        where = f"section {warehouse_code}/{section_code}"
        return problems or [Problem(ProblemCode.UNKNOWN_SKU, "sku", f"{where} holds no {sku}")]
    if level.on_hand + delta < level.reserved:
        message = (
            f"{level.on_hand} on hand, {level.reserved} reserved: on-hand cannot go below what is "
            f"reserved, so the change can be at least {level.reserved - level.on_hand}"
        )
        return [Problem(ProblemCode.BELOW_RESERVED, "quantityDelta", message)]
    message = f"{level.on_hand} on hand: on-hand cannot exceed {MAX_COUNT}"
    return [Problem(ProblemCode.OUT_OF_RANGE, "quantityDelta", message)]


async def _check_room(
    conn: Db, sku: str, warehouse_code: str, section_code: str, quantity: int, field: str
) -> list[Problem]:
    """Whether `quantity` more of `sku` in the section keeps the section's and the product's on-hand
    within MAX_COUNT: every count the service serves is a GraphQL Int."""
    await _LOCK_PRODUCT.hold(conn, {"k": sku}, sku)
    key = _stock_row(sku, warehouse_code, section_code)
    held = (await conn.execute(select(stock.c.on_hand).where(*key))).scalar() or 0
    total = (await conn.execute(select(func.sum(stock.c.on_hand)).where(stock.c.sku == sku))).scalar() or 0
    if max(held, total) + quantity > MAX_COUNT:
        return [
            Problem(
                ProblemCode.OUT_OF_RANGE,
                field,
                f"this would take the stock of {sku} past {MAX_COUNT} units "
                f"(the section holds {held}, all sections {total})",
            )
        ]
    return []


def _stock_row(sku: str, warehouse_code: str, section_code: str) -> tuple[ColumnElement[bool], ...]:
    return (
        stock.c.warehouse_code == warehouse_code,
        stock.c.section_code == section_code,
        stock.c.sku == sku,
    )


async def _check_place(conn: Db, sku: str, warehouse_code: str, section_code: str) -> list[Problem]:
    """Whether the product, the warehouse and its section exist, and the section suits the product."""
    product = (await conn.execute(select(products.c.storage_condition).where(products.c.sku == sku))).first()
    if product is None:
        return [Problem(ProblemCode.UNKNOWN_SKU, "sku", f"no product {sku}")]
    if not (await conn.execute(select(warehouses.c.code).where(warehouses.c.code == warehouse_code))).first():
        return [Problem(ProblemCode.UNKNOWN_WAREHOUSE, "warehouseCode", f"no warehouse {warehouse_code}")]
    section = (
        await conn.execute(
            select(sections.c.storage_condition).where(
                sections.c.warehouse_code == warehouse_code, sections.c.code == section_code
            )
        )
    ).first()
    if section is None:
        return [
            Problem(
                ProblemCode.UNKNOWN_SECTION,
                "sectionCode",
                f"warehouse {warehouse_code} has no section {section_code}",
            )
        ]
    if section.storage_condition != product.storage_condition:
        return [
            Problem(
                ProblemCode.CONDITION_MISMATCH,
                "sectionCode",
                f"{sku} needs {product.storage_condition} storage; section {section_code} is "
                f"{section.storage_condition}",
            )
        ]
    return []
