"""A small demo catalog, loaded once, so that GraphiQL has something to order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.model.values import StorageCondition
from persistence.connection import Db
from persistence.write import catalog

if TYPE_CHECKING:
    from api.service import Service

AMBIENT, REFRIGERATED, FROZEN = (
    StorageCondition.AMBIENT,
    StorageCondition.REFRIGERATED,
    StorageCondition.FROZEN,
)

WAREHOUSES = [
    ("BER", "Berlin", [("A1", AMBIENT), ("A2", AMBIENT), ("C1", REFRIGERATED)]),
    ("HAM", "Hamburg", [("A1", AMBIENT), ("F1", FROZEN)]),
]
PRODUCTS = [
    ("TEA-GREEN", "Green tea, 100 bags", AMBIENT),
    ("MUG-BLUE", "Blue mug", AMBIENT),
    ("MILK-1L", "Whole milk, 1 l", REFRIGERATED),
    ("PEAS-FROZEN", "Frozen peas, 1 kg", FROZEN),
]
STOCK = [
    ("TEA-GREEN", "BER", "A1", 40),
    ("TEA-GREEN", "HAM", "A1", 25),
    ("MUG-BLUE", "BER", "A2", 10),
    ("MILK-1L", "BER", "C1", 30),
    ("PEAS-FROZEN", "HAM", "F1", 5),
]


async def load_demo_catalog(svc: Service) -> None:
    """Load the catalog above unless one is there, once however many processes start together."""

    async def load(conn: Db) -> None:
        if not await catalog.empty_for_loading(conn):
            return  # loaded before, or the operator's own catalog is there: leave it alone
        for code, name, sections in WAREHOUSES:
            await catalog.register_warehouse(conn, code, name, sections)
        for sku, name, condition in PRODUCTS:
            await catalog.register_product(conn, sku, name, condition)
        for sku, warehouse, section, quantity in STOCK:
            await catalog.receive_stock(conn, sku, warehouse, section, quantity, svc.clock.now())

    await svc.write(load)
