"""Every change of a section's stock is a movement written in the same transaction, on SQLite and
PostgreSQL: receipts, reservations, releases, dispatches and adjustments add up to each section's
on-hand and reserved; an adjustment that would go below what is reserved, or past a 32-bit count,
is refused and changes nothing."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor
from domain.model.problems import MAX_COUNT, ProblemCode
from domain.model.saga import SagaState, SagaStatus
from domain.model.values import OrderLine
from persistence.tables import stock_movements
from persistence.write import catalog
from persistence.write.movements import unexplained_stock
from tests.integration.support import wait_for_status


async def _order(svc: Service, quantity: int, status: SagaStatus) -> tuple[str, str]:
    placed = await svc.orchestrator.place_order(PlaceOrder("alice", (OrderLine("SKU-1", quantity),)))
    await wait_for_status(svc, placed.saga_id, status)
    return placed.saga_id, placed.order_id


async def _adjust(svc: Service, delta: int, reason: str = "cycle count") -> list[ProblemCode]:
    problems = await svc.write(
        lambda conn: catalog.adjust_stock(conn, "SKU-1", "W1", "A", delta, reason, svc.clock.now())
    )
    return [p.code for p in problems]


async def _movements(svc: Service) -> list[tuple[str, int, int, str | None]]:
    m = stock_movements.c
    query = select(m.kind, m.on_hand_change, m.reserved_change, m.reference).order_by(m.occurred_at)
    async with svc.read.engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(query)]  # type: ignore[misc]


async def test_the_movements_of_a_section_explain_its_stock(svc: Service) -> None:
    shipped_saga, shipped_order = await _order(svc, 3, SagaStatus.COMPLETED)
    order = await svc.read.order(shipped_order)
    assert order is not None
    dispatched = await svc.orchestrator.dispatch_shipment(shipped_saga, order.shipment_id)
    assert isinstance(dispatched, SagaState)
    cancelled_saga, cancelled_order = await _order(svc, 2, SagaStatus.COMPLETED)
    assert isinstance(
        await svc.orchestrator.cancel_order(cancelled_saga, Actor("customer-1", "customer")), SagaState
    )
    await wait_for_status(svc, cancelled_saga, SagaStatus.FAILED)
    assert await _adjust(svc, -1, "a damaged pallet") == []

    kinds = Counter((kind, on_hand, reserved) for kind, on_hand, reserved, _ in await _movements(svc))
    assert kinds == Counter(
        {
            ("RECEIPT", 10, 0): 1,
            ("RESERVATION", 0, 3): 1,
            ("DISPATCH", -3, -3): 1,
            ("RESERVATION", 0, 2): 1,
            ("RELEASE", 0, -2): 1,
            ("ADJUSTMENT", -1, 0): 1,
        }
    )
    references = {kind: ref for kind, _, _, ref in await _movements(svc)}
    assert references["DISPATCH"] == order.shipment_id and references["RELEASE"] == cancelled_order
    assert (references["ADJUSTMENT"], references["RECEIPT"]) == ("a damaged pallet", None)
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (6, 0)
    async with svc.read.engine.connect() as conn:
        assert await unexplained_stock(conn) == []


async def test_an_adjustment_never_goes_below_what_is_reserved(svc: Service) -> None:
    await _order(svc, 4, SagaStatus.COMPLETED)  # 10 on hand, 4 reserved

    assert await _adjust(svc, -7) == [ProblemCode.BELOW_RESERVED]
    assert await _adjust(svc, MAX_COUNT) == [ProblemCode.OUT_OF_RANGE]
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 4)
    assert [kind for kind, *_ in await _movements(svc)] == ["RECEIPT", "RESERVATION"]

    assert await _adjust(svc, -6) == []
    assert await _adjust(svc, MAX_COUNT - 4) == []
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (MAX_COUNT, 4)


async def test_an_adjustment_of_stock_the_section_does_not_hold_is_refused(svc: Service) -> None:
    problems = await svc.write(
        lambda conn: catalog.adjust_stock(conn, "SKU-1", "W2", "A", 5, "found some", svc.clock.now())
    )
    assert [p.code for p in problems] == [ProblemCode.UNKNOWN_SKU]
    problems = await svc.write(
        lambda conn: catalog.adjust_stock(conn, "SKU-1", "W9", "A", 5, "found some", svc.clock.now())
    )
    assert [p.code for p in problems] == [ProblemCode.UNKNOWN_WAREHOUSE]
    assert [kind for kind, *_ in await _movements(svc)] == ["RECEIPT"]


async def test_adjustments_racing_reservations_never_undercut_them(svc: Service) -> None:
    async def reserve() -> str:
        placed = await svc.orchestrator.place_order(PlaceOrder("bob", (OrderLine("SKU-1", 1),)))
        return await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED, SagaStatus.FAILED)

    outcomes = await asyncio.gather(*(reserve() for _ in range(8)), *(_adjust(svc, -1) for _ in range(4)))

    completed = sum(1 for o in outcomes if o == "COMPLETED")
    adjusted = sum(1 for o in outcomes if o == [])
    refused = [o for o in outcomes if isinstance(o, list) and o]
    assert all(codes == [ProblemCode.BELOW_RESERVED] for codes in refused)
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10 - adjusted, completed)
    assert completed + adjusted <= 10 and completed >= 6  # 10 units, 4 adjustments of one at most
    async with svc.read.engine.connect() as conn:
        assert await unexplained_stock(conn) == []


async def test_an_adjustment_never_takes_a_products_total_past_a_count(svc: Service) -> None:
    problems = await svc.write(
        lambda conn: catalog.receive_stock(conn, "SKU-1", "W2", "A", 5, svc.clock.now())
    )
    assert problems == []  # 10 in W1/A, 5 in W2/A

    assert await _adjust(svc, MAX_COUNT - 12) == [ProblemCode.OUT_OF_RANGE]  # W1/A fits, the total not
    assert await _adjust(svc, MAX_COUNT - 15) == []
    products = await svc.catalog.products()
    assert [(p.sku, p.on_hand) for p in products] == [("SKU-1", MAX_COUNT)]
