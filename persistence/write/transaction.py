"""One database transaction, seen as the domain's Transaction port."""

from __future__ import annotations

from persistence.connection import Db
from persistence.fleet.leases import LeaseBook
from persistence.metrics import StoreMetrics
from persistence.write.journal import SqlSagaStore
from persistence.write.participants import SqlInventory, SqlOrders, SqlShipments
from persistence.write.requests import SqlRequestKeys


class SqlTransaction:
    def __init__(self, conn: Db, metrics: StoreMetrics, lease_book: LeaseBook | None = None) -> None:
        self.orders = SqlOrders(conn)
        self.inventory = SqlInventory(conn, metrics)
        self.shipments = SqlShipments(conn)
        self.sagas = SqlSagaStore(conn, lease_book)
        self.requests = SqlRequestKeys(conn)
