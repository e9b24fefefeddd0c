"""Migration 0007 on a database both 0.1.0 and 0.2.0 wrote: only 0.1.0's placements are scoped to
their order's customer, and a lookup finds each kind for whom it belongs to; downgrading puts 0.1.0's
placements back as they were written."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine
from persistence.connection import AsyncDb
from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.tables import orders, placements
from persistence.write.journal import SqlSagaStore
from tests.upgrade.releases import downgrade

LINES: list[dict[str, Any]] = [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]


def request(customer_id: str) -> PlaceOrder:
    return PlaceOrder(customer_id, tuple(OrderLine(x["sku"], x["quantity"]) for x in LINES))


def fingerprint_of_0_1_0(customer_id: str) -> str:
    """As release 0.1.0 fingerprinted a request (its domain/orchestrator.py)."""
    joined = "|".join([customer_id, *sorted(f"{x['sku']}x{x['quantity']}" for x in LINES)])
    return hashlib.sha256(joined.encode()).hexdigest()


async def test_only_0_1_0_placements_are_scoped_to_their_customer(database_url: str) -> None:
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(downgrade, "0006")
            # 0.1.0 bound "k" for customer-1 as sent; 0.2.0 bound a caller's digest of "k" for customer-2.
            await conn.execute(
                insert(orders),
                [
                    {"id": o, "customer_id": c, "status": "CONFIRMED", "lines": LINES}
                    | {"created_at": now, "updated_at": now}
                    for o, c in [("order-old", "customer-1"), ("order-new", "customer-2")]
                ],
            )
            await conn.execute(
                insert(placements),
                [
                    {"idempotency_key": "k", "fingerprint": fingerprint_of_0_1_0("customer-1")}
                    | {"saga_id": "saga-old", "order_id": "order-old"},
                    {"idempotency_key": "digest-of-k", "fingerprint": request("customer-2").fingerprint()}
                    | {"saga_id": "saga-new", "order_id": "order-new"},
                ],
            )
        await upgrade(engine)

        async with engine.connect() as conn:
            rows = {r.order_id: r for r in await conn.execute(select(placements))}
            assert rows["order-old"].customer_scope == "customer-1"
            assert rows["order-old"].fingerprint == request("customer-1").fingerprint()
            assert rows["order-new"].customer_scope is None
            assert rows["order-new"].fingerprint == request("customer-2").fingerprint()

            store = SqlSagaStore(AsyncDb(conn))
            found = await store.find_placement("digest-of-k", "k", "customer-1")
            assert found is not None and found.order_id == "order-old"  # 0.1.0's first
            found = await store.find_placement("digest-of-k", "k", "customer-2")
            assert found is not None and found.order_id == "order-new"
            assert await store.find_placement("another digest", "k", "customer-2") is None
            assert await store.find_placement("another digest", "k") is None

        async with engine.begin() as conn:
            await conn.run_sync(downgrade, "0006")
            query = select(placements.c.order_id, placements.c.fingerprint)
            rows = {r.order_id: r for r in await conn.execute(query)}
            assert rows["order-old"].fingerprint == fingerprint_of_0_1_0("customer-1")
            assert rows["order-new"].fingerprint == request("customer-2").fingerprint()
        await upgrade(engine)
    finally:
        await engine.dispose()
