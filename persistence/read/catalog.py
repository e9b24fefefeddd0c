"""The read side of the catalog: warehouses with their sections and stock, products, stock levels
and the stock movements ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select

from persistence.read.paging import PageFilter, Position, Window, count, filtered, newest_first
from persistence.read.reader import ReadEngine, Reader
from persistence.read.rows import ProductRow, StockLevelRow, StockMovementRow, WarehouseStockRow
from persistence.tables import products, sections, stock, stock_movements, warehouses


class CatalogReads(Reader):
    def __init__(self, reads: ReadEngine) -> None:
        super().__init__(reads)
        self._known_skus: set[str] = set()

    async def stock_levels(self, sku: str, place: tuple[str, str] | None = None) -> list[StockLevelRow]:
        """`sku`'s stock rows, or the one of `place` (a warehouse and a section code)."""
        return await self._typed_all(stock_levels_query(sku, place), StockLevelRow)

    async def warehouses(self, codes: Sequence[str] | None = None) -> list[WarehouseStockRow]:
        """Every warehouse (or those with these `codes`), section and stock row in one query, ordered
        by warehouse, section and SKU: one row per stock row, or one with NULLs for a section holding
        nothing (or a warehouse with no sections)."""
        return await self._typed_all(warehouses_query(codes), WarehouseStockRow)

    async def warehouse_service_urls(self) -> dict[str, str]:
        """The service URL of every warehouse that has one, by warehouse code."""
        query = select(warehouses.c.code, warehouses.c.service_url).where(
            warehouses.c.service_url.is_not(None)
        )
        return {row.code: row.service_url for row in await self._all(query)}

    async def known_warehouses(self, codes: Sequence[str]) -> set[str]:
        """Which of `codes` are warehouses' codes."""
        if not codes:
            return set()
        query = select(warehouses.c.code).where(warehouses.c.code.in_(set(codes)))
        return {row.code for row in await self._all(query)}

    async def products(self, skus: Sequence[str] | None = None) -> list[ProductRow]:
        """Every product (or those with these `skus`) with its stock summed over all sections, in SKU
        order."""
        query = (
            select(
                products.c.sku,
                products.c.name,
                products.c.storage_condition,
                func.coalesce(func.sum(stock.c.on_hand), 0).label("on_hand"),
                func.coalesce(func.sum(stock.c.reserved), 0).label("reserved"),
            )
            .select_from(products)
            .outerjoin(stock, stock.c.sku == products.c.sku)
            .group_by(products.c.sku, products.c.name, products.c.storage_condition)
            .order_by(products.c.sku)
        )
        query = query if skus is None else query.where(products.c.sku.in_(skus))
        return await self._typed_all(query, ProductRow)

    def learn_sku(self, sku: str) -> None:
        """`sku` is a product's: this process registered it (or found it registered), so its first
        order needs no lookup."""
        self._known_skus.add(sku)

    async def known_skus(self, skus: Sequence[str]) -> set[str]:
        # Products are never removed, so a SKU once seen stays known (in every process); only the
        # ones not seen yet are looked up.
        unseen = [sku for sku in skus if sku not in self._known_skus]
        if unseen:
            rows = await self._all(select(products.c.sku).where(products.c.sku.in_(unseen)))
            self._known_skus.update(r.sku for r in rows)
        return {sku for sku in skus if sku in self._known_skus}

    async def stock_movement_page(
        self,
        sku: str,
        warehouse_code: str | None,
        section_code: str | None,
        where: PageFilter,
        window: Window[Position],
    ) -> list[StockMovementRow]:
        conditions = _movements(sku, warehouse_code, section_code, where)
        return await self._typed_all(
            newest_first(stock_movements, stock_movements.c.occurred_at, conditions, window), StockMovementRow
        )

    async def stock_movement_count(
        self, sku: str, warehouse_code: str | None, section_code: str | None, where: PageFilter
    ) -> int:
        return await self._count(count(stock_movements, _movements(sku, warehouse_code, section_code, where)))


def _movements(
    sku: str, warehouse_code: str | None, section_code: str | None, where: PageFilter
) -> list[ColumnElement[bool]]:
    """The conditions of a list of stock movements: one SKU's, in one warehouse or section if given."""
    m = stock_movements.c
    conditions = [*filtered(stock_movements, m.occurred_at, where), m.sku == sku]
    if warehouse_code is not None:
        conditions.append(m.warehouse_code == warehouse_code)
    if section_code is not None:
        conditions.append(m.section_code == section_code)
    return conditions


def stock_levels_query(sku: str, place: tuple[str, str] | None = None) -> Select[Any]:
    """`sku`'s stock rows (StockLevelRow's columns), by warehouse and section; only the one of
    `place` (a warehouse and section code) when given. Run by the read side, and by a write that
    answers the level it leaves within its own transaction."""
    query = (
        select(stock.c.warehouse_code, stock.c.section_code, stock.c.sku, stock.c.on_hand, stock.c.reserved)
        .where(stock.c.sku == sku)
        .order_by(stock.c.warehouse_code, stock.c.section_code)
    )
    if place is not None:
        query = query.where(stock.c.warehouse_code == place[0], stock.c.section_code == place[1])
    return query


def warehouses_query(codes: Sequence[str] | None = None) -> Select[Any]:
    """CatalogReads.warehouses' query (WarehouseStockRow's columns), also run by a write that answers
    the warehouse as it leaves it, within its own transaction."""
    query = (
        select(
            warehouses.c.code.label("warehouse_code"),
            warehouses.c.name.label("warehouse_name"),
            warehouses.c.service_url,
            sections.c.code.label("section_code"),
            sections.c.storage_condition,
            stock.c.sku,
            stock.c.on_hand,
            stock.c.reserved,
        )
        .select_from(warehouses)
        .outerjoin(sections, sections.c.warehouse_code == warehouses.c.code)
        .outerjoin(
            stock,
            and_(
                stock.c.warehouse_code == sections.c.warehouse_code,
                stock.c.section_code == sections.c.code,
            ),
        )
        .order_by(warehouses.c.code, sections.c.code, stock.c.sku)
    )
    return query if codes is None else query.where(warehouses.c.code.in_(codes))
