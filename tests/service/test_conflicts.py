"""Conflicts the orchestrator meets again and again: it tries a bounded number of times, pausing
between tries, then gives up with StillContended and leaves the saga to its driver, which paces
its own reloads rather than spinning."""

from __future__ import annotations

import logging

import pytest

from domain.model.commands import PlaceOrder
from domain.model.saga import SagaStatus
from domain.model.values import OrderLine
from domain.orchestration.attempts import CONFLICT_ATTEMPTS
from domain.ports import ConcurrencyConflict, StillContended
from tests.polling import eventually
from tests.service.harness import Harness


async def test_a_dispatch_that_conflicts_every_time_gives_up_and_leaves_the_saga_driven(
    harness: Harness,
) -> None:
    saga_id = await harness.place()
    shipment_id = harness.saga(saga_id).shipment_id
    assert shipment_id is not None
    harness.world.failures["dispatch_stock"] = [ConcurrencyConflict("moved")] * (CONFLICT_ATTEMPTS + 1)

    with pytest.raises(StillContended):
        await harness.orchestrator.dispatch_shipment(saga_id, shipment_id)

    assert len(harness.world.failures["dispatch_stock"]) == 1  # tried CONFLICT_ATTEMPTS times, no more
    assert harness.saga(saga_id).status is SagaStatus.COMPLETED  # nothing of it was kept
    # Sent again, it meets the last conflict, then goes through.
    await harness.orchestrator.dispatch_shipment(saga_id, shipment_id)
    assert harness.world.failures["dispatch_stock"] == []
    assert harness.world.shipment_statuses[shipment_id] == "DISPATCHED"


async def test_a_placement_that_conflicts_every_time_gives_up_placing_nothing(harness: Harness) -> None:
    harness.world.failures["create_order"] = [ConcurrencyConflict("bound")] * CONFLICT_ATTEMPTS

    with pytest.raises(StillContended):
        await harness.orchestrator.place_order(PlaceOrder("customer-1", (OrderLine("SKU-1", 1),), "key"))

    assert harness.world.failures["create_order"] == []
    assert harness.world.journal == {} and harness.world.placements == {}


async def test_a_driver_that_keeps_conflicting_paces_its_reloads_and_then_goes_on(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.world.failures["confirm_order"] = [ConcurrencyConflict("moved")] * (CONFLICT_ATTEMPTS + 1)

    saga_id = await harness.place()

    await eventually(lambda: harness.saga(saga_id).status is SagaStatus.COMPLETED, "the saga to complete")
    assert harness.world.failures["confirm_order"] == []
    paced = [r for r in caplog.records if "conflicts in a row" in r.getMessage()]
    assert [r.levelno for r in paced] == [logging.WARNING, logging.WARNING]
