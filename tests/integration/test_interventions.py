"""Aborts and cancellations racing running sagas on a real database (SQLite and PostgreSQL): whatever
step each saga is at, and whichever commit lands first, every step takes effect once or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor, Refused
from domain.model.problems import ProblemCode
from domain.model.saga import CUSTOMER_CANCELLED, Participant, SagaChange, SagaState, SagaStatus
from domain.model.values import OrderLine
from tests.integration.support import start_service, stock_catalog, wait_for_status


class EveryStepApart:
    """A gate that admits every call: with a gate, each step commits on its own (no chaining), so
    every status below is a committed state an intervention can race."""

    def refusal(self, participant: Participant, warehouse_code: str) -> str | None:
        return None  # every warehouse takes its shipments

    async def admit(self, participant: Participant) -> None:
        return None


@pytest.fixture
async def stepwise(database_url: str) -> AsyncIterator[Service]:
    service = await start_service(database_url, gate=EveryStepApart())
    await stock_catalog(service)
    yield service
    await service.stop()


async def test_interventions_racing_running_sagas_leave_stock_and_orders_exact(stepwise: Service) -> None:
    svc = stepwise
    # Each saga is intervened upon the moment it reaches one of these statuses, so the intervention
    # races the driver's next step (or, at COMPLETED, comes too late for an abort).
    points = [SagaStatus.STOCK_RESERVING, SagaStatus.ORDER_CONFIRMING, SagaStatus.SHIPMENT_CREATING]
    points.append(SagaStatus.COMPLETED)
    interventions: dict[str, asyncio.Task[SagaState | Refused]] = {}

    def intervene(change: SagaChange) -> None:
        state = change.after
        n = int(state.customer_id)
        if state.status is points[n % len(points)] and state.customer_id not in interventions:
            if n >= len(points):
                attempt = svc.orchestrator.cancel_order(state.saga_id, Actor("customer-1", "customer"))
            else:
                attempt = svc.orchestrator.abort(state.saga_id, "racing", Actor("operator-1", "operator"))
            interventions[state.customer_id] = asyncio.create_task(attempt)

    svc.orchestrator.add_listener(intervene)
    placed = [
        await svc.orchestrator.place_order(PlaceOrder(str(n), (OrderLine("SKU-1", 1),))) for n in range(8)
    ]
    for p in placed:
        await wait_for_status(svc, p.saga_id, SagaStatus.COMPLETED, SagaStatus.FAILED)
    assert sorted(interventions) == [str(n) for n in range(8)]
    results = [(p.saga_id, p.order_id, await interventions[str(n)]) for n, p in enumerate(placed)]

    completed = 0
    for saga_id, order_id, result in results:
        status = await wait_for_status(svc, saga_id, SagaStatus.COMPLETED, SagaStatus.FAILED)
        saga, order = await svc.read.saga(saga_id), await svc.read.order(order_id)
        assert saga is not None and order is not None
        if isinstance(result, Refused):
            assert result.code is ProblemCode.SAGA_FINISHED
            assert status == "COMPLETED" and order.shipment_id is not None
            completed += 1
        else:
            # A cancellation of a completed order (not yet dispatched) cancels its shipment too.
            assert status == "FAILED" and saga.failure_reason in ("racing", CUSTOMER_CANCELLED)
            [shipment] = await svc.read.shipments([order_id]) or [None]
            assert order.status == "CANCELLED" and (shipment is None or shipment.status == "CANCELLED")
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, completed)
