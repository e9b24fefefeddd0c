"""One database transaction, seen as the domain's Transaction port."""

from __future__ import annotations

from persistence.db import Db
from persistence.journal import SqlSagaStore
from persistence.leases import Fleet
from persistence.metrics import StoreMetrics
from persistence.participants import SqlInventory, SqlOrders, SqlShipments
from persistence.requests import SqlRequestKeys


class SqlTransaction:
    def __init__(self, conn: Db, metrics: StoreMetrics, fleet: Fleet | None = None) -> None:
        self.orders = SqlOrders(conn)
        self.inventory = SqlInventory(conn, metrics)
        self.shipments = SqlShipments(conn)
        self.sagas = SqlSagaStore(conn, fleet)
        self.requests = SqlRequestKeys(conn)
