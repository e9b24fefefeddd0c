"""An order picked from two warehouses on a real database (SQLite and PostgreSQL): one shipment per
warehouse, each with its own picks, in the participant's table and the read model alike; each is
dispatched on its own, the order PARTIALLY_SHIPPED until the last and SHIPPED then, and no longer
cancelled once one has left; one warehouse's refusal cancels the other's shipment, then releases the
stock and cancels the order."""

from __future__ import annotations

from sqlalchemy import select

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import SagaState, SagaStatus, shipment_id_of
from domain.model.values import OrderLine, StorageCondition
from persistence.tables import orders, shipments
from persistence.write import catalog
from tests.integration.staging import start_stage
from tests.integration.support import wait_for_status

CUSTOMER = Actor("alice", "customer")


async def _two_warehouse_order(svc: Service) -> tuple[str, str]:
    """A completed order of 12 SKU-1: W1 holds 10 of them, so 2 come from W2."""

    async def load(conn) -> None:  # type: ignore[no-untyped-def]
        await catalog.receive_stock(conn, "SKU-1", "W2", "A", 5, svc.clock.now())

    await svc.write(load)
    placed = await svc.orchestrator.place_order(PlaceOrder("alice", (OrderLine("SKU-1", 12),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)
    return placed.saga_id, placed.order_id


async def test_a_two_warehouse_order_makes_one_shipment_per_warehouse(svc: Service) -> None:
    saga_id, order_id = await _two_warehouse_order(svc)

    rows = await svc.read.shipments([order_id])
    assert [(r.id, r.warehouse_code, r.status) for r in rows] == [
        (shipment_id_of(saga_id, "W1"), "W1", "CREATED"),
        (shipment_id_of(saga_id, "W2"), "W2", "CREATED"),
    ]
    assert [[(p["warehouseCode"], p["quantity"]) for p in r.picks] for r in rows] == [
        [("W1", 10)],
        [("W2", 2)],
    ]
    async with svc.read.engine.connect() as conn:
        made = (
            await conn.execute(select(shipments.c.id, shipments.c.warehouse_code, shipments.c.status))
        ).all()
    assert sorted(tuple(r) for r in made) == sorted((r.id, r.warehouse_code, "CREATED") for r in rows)


async def test_each_shipment_is_dispatched_on_its_own_and_the_order_ships_with_the_last(svc: Service) -> None:
    saga_id, order_id = await _two_warehouse_order(svc)
    w1, w2 = shipment_id_of(saga_id, "W1"), shipment_id_of(saga_id, "W2")

    partly = await svc.orchestrator.dispatch_shipment(saga_id, w2)

    assert isinstance(partly, SagaState) and partly.any_dispatched and not partly.is_dispatched
    order = await svc.read.order(order_id)
    assert order is not None and (order.status, order.shipped_at) == ("PARTIALLY_SHIPPED", None)
    # Only W2's picks left: W1's 10 are still held.
    assert [(p["warehouseCode"], p["quantity"]) for p in order.picks] == [("W1", 10)]
    levels = {level.warehouse_code: level for level in await svc.catalog.stock_levels("SKU-1")}
    assert (levels["W1"].on_hand, levels["W1"].reserved) == (10, 10)
    assert (levels["W2"].on_hand, levels["W2"].reserved) == (3, 0)
    refused = await svc.orchestrator.cancel_order(saga_id, CUSTOMER)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED
    again = await svc.orchestrator.dispatch_shipment(saga_id, w2)
    assert isinstance(again, Refused) and again.code is ProblemCode.SHIPMENT_ALREADY_DISPATCHED
    async with svc.read.engine.connect() as conn:
        assert (await conn.execute(select(orders.c.status))).scalar_one() == "PARTIALLY_SHIPPED"

    wholly = await svc.orchestrator.dispatch_shipment(saga_id, w1)

    assert isinstance(wholly, SagaState) and wholly.is_dispatched
    order = await svc.read.order(order_id)
    assert order is not None and (order.status, order.shipped_at, order.picks) == (
        "SHIPPED",
        wholly.dispatched_at,
        [],
    )
    assert [r.status for r in await svc.read.shipments([order_id])] == ["DISPATCHED", "DISPATCHED"]
    levels = {level.warehouse_code: level for level in await svc.catalog.stock_levels("SKU-1")}
    assert (levels["W1"].on_hand, levels["W1"].reserved) == (0, 0)
    async with svc.read.engine.connect() as conn:
        assert (await conn.execute(select(orders.c.status))).scalar_one() == "SHIPPED"
        assert sorted((await conn.execute(select(shipments.c.status))).scalars()) == ["DISPATCHED"] * 2


async def test_a_two_warehouse_order_cancelled_before_dispatch_cancels_both_shipments(svc: Service) -> None:
    saga_id, order_id = await _two_warehouse_order(svc)

    cancelled = await svc.orchestrator.cancel_order(saga_id, CUSTOMER)

    assert isinstance(cancelled, SagaState)
    await wait_for_status(svc, saga_id, SagaStatus.FAILED)
    assert [r.status for r in await svc.read.shipments([order_id])] == ["CANCELLED", "CANCELLED"]
    async with svc.read.engine.connect() as conn:
        assert sorted((await conn.execute(select(shipments.c.status))).scalars()) == ["CANCELLED"] * 2
    levels = {level.warehouse_code: level for level in await svc.catalog.stock_levels("SKU-1")}
    assert (levels["W1"].reserved, levels["W2"].reserved) == (0, 0)


async def test_a_refused_shipment_cancels_the_other_then_releases_stock_and_cancels_the_order(
    database_url: str,
) -> None:
    stage = await start_stage(database_url)
    try:

        async def load(conn) -> None:  # type: ignore[no-untyped-def]
            await catalog.register_warehouse(conn, "W2", "Two", [("A", StorageCondition.AMBIENT)])
            await catalog.receive_stock(conn, "SKU-1", "W2", "A", 5, stage.clock.now())

        await stage.stock(10)
        await stage.svc.write(load)
        stage.gate.refusing.add("W2")
        saga_id = await stage.order(12)

        saga = await stage.svc.read.saga(saga_id)
        assert saga is not None
        assert (saga.status, saga.failed_step, saga.failure_kind) == ("FAILED", "CREATE_SHIPMENT", "REJECTED")
        assert saga.failure_reason == "warehouse W2 refused the shipment"
        # The way back, newest first: the shipment created, the stock, the order.
        assert [s["name"] for s in saga.steps][-4:] == [
            "CREATE_SHIPMENT",
            "CANCEL_SHIPMENT",
            "RELEASE_STOCK",
            "CANCEL_ORDER",
        ]
        rows = await stage.svc.read.shipments([saga.order_id])
        assert [(r.warehouse_code, r.status) for r in rows] == [("W1", "CANCELLED"), ("W2", "REJECTED")]
        order = await stage.svc.read.order(saga.order_id)
        assert order is not None and (order.status, order.picks) == ("CANCELLED", [])
        assert [
            (level.on_hand, level.reserved) for level in await stage.svc.catalog.stock_levels("SKU-1")
        ] == [
            (10, 0),
            (5, 0),
        ]
        async with stage.svc.read.engine.connect() as conn:
            made = (await conn.execute(select(shipments.c.warehouse_code, shipments.c.status))).all()
        assert [tuple(r) for r in made] == [("W1", "CANCELLED")]  # the refused one never existed
    finally:
        await stage.svc.stop()
