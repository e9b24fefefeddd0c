"""Inventory administration: warehouses with their sections, products, and stock receipts.

Each command checks what only the database can tell (does it exist, does the condition suit, does
the stock still fit a 32-bit count) and either changes everything it was asked to or nothing,
returning the problems found.
"""

from __future__ import annotations

from sqlalchemy import func, insert, select, update

from domain.model import StorageCondition
from domain.problems import MAX_COUNT, Problem, ProblemCode
from persistence.db import Db
from persistence.tables import products, sections, stock, warehouses


async def register_warehouse(
    conn: Db, code: str, name: str, new_sections: list[tuple[str, StorageCondition]]
) -> list[Problem]:
    if (await conn.execute(select(warehouses.c.code).where(warehouses.c.code == code))).first():
        return [Problem(ProblemCode.DUPLICATE_WAREHOUSE, "code", f"warehouse {code} already exists")]
    await conn.execute(insert(warehouses).values(code=code, name=name))
    if new_sections:
        await conn.execute(
            insert(sections),
            [{"warehouse_code": code, "code": s, "storage_condition": c.value} for s, c in new_sections],
        )
    return []


async def register_product(conn: Db, sku: str, name: str, condition: StorageCondition) -> list[Problem]:
    if (await conn.execute(select(products.c.sku).where(products.c.sku == sku))).first():
        return [Problem(ProblemCode.DUPLICATE_PRODUCT, "sku", f"product {sku} already exists")]
    await conn.execute(insert(products).values(sku=sku, name=name, storage_condition=condition.value))
    return []


async def receive_stock(
    conn: Db, sku: str, warehouse_code: str, section_code: str, quantity: int
) -> list[Problem]:
    # Locked (on PostgreSQL) so that receipts of one SKU into different sections take turns, and the
    # total checked below is the total they add to.
    product = (
        await conn.execute(
            select(products.c.storage_condition).where(products.c.sku == sku).with_for_update()
        )
    ).first()
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
    key = (stock.c.warehouse_code == warehouse_code, stock.c.section_code == section_code, stock.c.sku == sku)
    held = (await conn.execute(select(stock.c.on_hand).where(*key))).scalar() or 0
    total = (await conn.execute(select(func.sum(stock.c.on_hand)).where(stock.c.sku == sku))).scalar() or 0
    if max(held, total) + quantity > MAX_COUNT:
        return [
            Problem(
                ProblemCode.OUT_OF_RANGE,
                "quantity",
                f"the receipt would take the stock of {sku} past {MAX_COUNT} units "
                f"(the section holds {held}, all sections {total})",
            )
        ]
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
    return []
