"""What commits is announced, and a placed order is driven, even when whoever waited for the commit
has stopped waiting: a driver halted by an intervention, a client that went away."""

from __future__ import annotations

import asyncio

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor
from domain.model.saga import SagaChange, SagaStatus
from domain.model.values import OrderLine
from persistence.read.paging import PageFilter, Window
from persistence.read.sagas import SagaPages
from tests.integration.support import TERMINAL, wait_for_status


async def test_a_halted_drivers_commit_is_still_announced(svc: Service) -> None:
    announced: dict[str, SagaChange] = {}
    svc.orchestrator.add_listener(lambda change: announced.__setitem__(change.after.saga_id, change))
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),)))
    await asyncio.sleep(0)  # the driver has sent the rest of the saga to be committed

    # Halts that driver while its commit is on the way.
    await svc.orchestrator.cancel_order(placed.saga_id, Actor("customer-1", "customer"))
    final = await wait_for_status(svc, placed.saga_id, *TERMINAL)

    saga = await svc.read.saga(placed.saga_id)
    assert saga is not None
    last = announced[placed.saga_id].after
    assert (last.status.value, last.version) == (final, saga.version)


async def test_an_order_whose_client_went_away_is_still_driven(svc: Service) -> None:
    placing = asyncio.create_task(svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),))))
    for _ in range(5):
        await asyncio.sleep(0)  # the placement is queued for its commit
    placing.cancel()

    [saga_id] = await _sagas(svc.pages)
    assert await wait_for_status(svc, saga_id, SagaStatus.COMPLETED) == "COMPLETED"


async def _sagas(pages: SagaPages) -> list[str]:
    """The ids of the sagas there are, once there are any (bounded wait)."""
    for _ in range(250):
        page = await pages.saga_page(PageFilter(), Window(10))
        if page:
            return [row.id for row in page]
        await asyncio.sleep(0.02)
    return []
