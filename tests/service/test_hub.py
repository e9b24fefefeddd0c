"""The hub between the orchestrator and live subscribers: publishing never waits for a subscriber,
notices are merged per saga, and a subscriber that falls too far behind is told so."""

from __future__ import annotations

import asyncio

import pytest

from api.live.hub import Committed, FellBehind, TransitionHub
from domain.model.commands import PlaceOrder
from domain.model.saga import SagaPolicy, SagaStatus, fold
from domain.model.values import OrderLine
from domain.orchestration.orchestrator import Orchestrator
from tests.service.fakes import FakeClock, FakeRunner, World, settle


async def test_sagas_run_on_while_a_subscriber_does_not_read_and_it_gets_one_notice_per_saga() -> None:
    hub, world = TransitionHub(), World(stock={"SKU-1": 10})
    orchestrator = Orchestrator(FakeRunner(world), FakeClock(), SagaPolicy(), listeners=[hub.on_change])
    try:
        with hub.subscribe() as everything:
            completing = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 2),)))
            failing = await orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 20),)))
            await settle()
            finals = [fold(p.saga_id, world.journal[p.saga_id]) for p in (completing, failing)]
            assert [s.status for s in finals] == [SagaStatus.COMPLETED, SagaStatus.FAILED]
            notices = await everything.next()
    finally:
        await orchestrator.stop()

    assert notices == [
        Committed(completing.saga_id, 1, finals[0].version, SagaStatus.COMPLETED),
        Committed(failing.saga_id, 1, finals[1].version, SagaStatus.FAILED),
    ]


async def test_a_saga_subscriber_hears_only_of_its_saga() -> None:
    hub = TransitionHub()
    with hub.subscribe("a") as one:
        waiting = asyncio.ensure_future(one.next())
        hub.publish(Committed("b", 1, 2, SagaStatus.STOCK_RESERVING))
        await settle()
        assert not waiting.done()
        hub.publish(Committed("a", 3, 3, SagaStatus.STOCK_RESERVED))
        hub.publish(Committed("a", 4, 5, SagaStatus.ORDER_CONFIRMED))
        assert await waiting == [Committed("a", 3, 5, SagaStatus.ORDER_CONFIRMED)]


async def test_a_subscriber_past_its_limit_fell_behind_while_the_others_hear_everything() -> None:
    hub = TransitionHub(limit=2)
    with hub.subscribe() as slow, hub.subscribe("c") as other:
        for saga_id in "abc":
            hub.publish(Committed(saga_id, 1, 2, SagaStatus.STOCK_RESERVING))
        with pytest.raises(FellBehind):
            await slow.next()
        assert await other.next() == [Committed("c", 1, 2, SagaStatus.STOCK_RESERVING)]


async def test_leaving_the_subscription_removes_the_subscriber() -> None:
    hub = TransitionHub()
    with hub.subscribe("a"), hub.subscribe("a"), hub.subscribe():
        assert hub.subscribers == 3
    assert hub.subscribers == 0
