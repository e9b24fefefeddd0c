"""Dispatching a completed saga's shipment on a real database (SQLite and PostgreSQL): the picks leave
their sections, the shipment is dispatched and the order shipped in one transaction, once only, also
when two services race; and a dispatched order is no longer cancelled."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import SagaState, SagaStatus
from domain.model.values import OrderLine
from persistence.database import is_sqlite
from persistence.tables import orders, reservations, shipments
from tests.integration.support import start_service, wait_for_status


async def _completed_order(svc: Service, quantity: int) -> tuple[str, str, str]:
    placed = await svc.orchestrator.place_order(PlaceOrder("alice", (OrderLine("SKU-1", quantity),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)
    order = await svc.read.order(placed.order_id)
    assert order is not None and order.shipment_id is not None
    return placed.saga_id, placed.order_id, order.shipment_id


async def test_racing_dispatches_of_a_shipment_dispatch_it_once(svc: Service, database_url: str) -> None:
    saga_id, order_id, shipment_id = await _completed_order(svc, 3)
    # A SQLite database is served by one process, so there the race is inside it; on PostgreSQL it is
    # between two services.
    other = svc if is_sqlite(database_url) else await start_service(database_url)
    try:
        answers = await asyncio.gather(
            svc.orchestrator.dispatch_shipment(saga_id, shipment_id),
            other.orchestrator.dispatch_shipment(saga_id, shipment_id),
        )
    finally:
        if other is not svc:
            await other.stop()

    dispatched = [a for a in answers if isinstance(a, SagaState)]
    refused = [a for a in answers if isinstance(a, Refused)]
    assert len(dispatched) == 1 and [r.code for r in refused] == [ProblemCode.SHIPMENT_ALREADY_DISPATCHED]
    at = dispatched[0].dispatched_at
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (7, 0)
    order, saga = await svc.read.order(order_id), await svc.read.saga(saga_id)
    assert order is not None and saga is not None
    assert (order.status, order.shipped_at, order.updated_at) == ("SHIPPED", at, at)
    assert saga.status == "COMPLETED"
    [shipment] = await svc.read.shipments([order_id])
    assert (shipment.status, shipment.dispatched_at) == ("DISPATCHED", at)
    async with svc.read.engine.connect() as conn:
        participant = (await conn.execute(select(shipments.c.status, shipments.c.dispatched_at))).one()
        assert tuple(participant) == ("DISPATCHED", at)
        assert (await conn.execute(select(orders.c.status))).scalar_one() == "SHIPPED"
        assert (await conn.execute(select(reservations.c.dispatched_at))).scalar_one() == at
    timeline = [row.type for row in await svc.read.saga_timeline(saga_id)]
    assert timeline.count("ShipmentDispatched") == 1


async def test_a_dispatched_order_is_not_cancelled_and_nothing_changes(svc: Service) -> None:
    saga_id, order_id, shipment_id = await _completed_order(svc, 2)
    assert isinstance(await svc.orchestrator.dispatch_shipment(saga_id, shipment_id), SagaState)
    before = await svc.read.saga_timeline(saga_id)

    refused = await svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))

    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_SHIPPED
    assert await svc.read.saga_timeline(saga_id) == before
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (8, 0)


async def test_a_completed_order_cancelled_before_dispatch_gives_its_stock_back(svc: Service) -> None:
    saga_id, order_id, shipment_id = await _completed_order(svc, 2)

    cancelled = await svc.orchestrator.cancel_order(saga_id, Actor("customer-1", "customer"))
    assert isinstance(cancelled, SagaState)
    await wait_for_status(svc, saga_id, SagaStatus.FAILED)

    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 0)
    order = await svc.read.order(order_id)
    assert order is not None and order.status == "CANCELLED"
    [shipment] = await svc.read.shipments([order_id])
    assert shipment.status == "CANCELLED"
    refused = await svc.orchestrator.dispatch_shipment(saga_id, shipment_id)
    assert isinstance(refused, Refused) and refused.code is ProblemCode.ORDER_ALREADY_CANCELLED
