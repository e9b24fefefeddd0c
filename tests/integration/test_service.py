"""The whole write and read path on a real database (SQLite and PostgreSQL): orchestrator, participants,
journal, projection, group commit, recovery."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.cli import parser
from api.service import SERVING_FIRST_GENERATION_THRESHOLD, Service
from api.settings import Settings
from api.subcommands.serve_options import settings_from
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor
from domain.model.saga import Outcome, Participant, SagaChange, SagaStatus, Succeeded, fold, replay
from domain.model.values import OrderLine, Pick
from domain.ports import ConcurrencyConflict, IdempotencyKeyReused, StepCommand, Transaction
from persistence.connection import Db
from persistence.read.projection import order_row, picks_json, saga_row, timeline_rows
from persistence.tables import orders, shipments
from persistence.write.journal import SagaWrites
from persistence.write.participants import SqlOrders
from tests.gates import Hold
from tests.integration.commands import command_for
from tests.integration.support import FAST, start_service, stock_catalog, wait_for_status
from tests.service.fakes import START as NOW


async def test_an_order_completes_and_the_read_model_shows_it(svc: Service) -> None:
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 3),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)

    order = await svc.read.order(placed.order_id)
    assert order is not None and order.status == "CONFIRMED" and order.shipment_id
    assert order.picks == [{"warehouseCode": "W1", "sectionCode": "A", "sku": "SKU-1", "quantity": 3}]
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 3)
    timeline = await svc.read.saga_timeline(placed.saga_id)
    assert [r.sequence for r in timeline] == list(range(1, 8))


async def test_on_sqlite_a_placement_commits_its_whole_saga_and_on_postgresql_places_alone(
    svc: Service, database_url: str
) -> None:
    commits = svc.metrics.commits
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 3),)))

    assert placed.state is not None
    if database_url.startswith("sqlite"):
        # One writer holds the whole database anyway: the calls share the placement's commit.
        assert placed.state.status is SagaStatus.COMPLETED
        assert svc.metrics.commits == commits + 1
    else:
        # A placement never waits for a stock row (decision 0024): the calls come after it.
        assert placed.state.status is SagaStatus.STOCK_RESERVING
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)
    timeline = await svc.read.saga_timeline(placed.saga_id)
    assert [r.sequence for r in timeline] == list(range(1, 8))


async def test_a_call_that_fails_in_the_placements_commit_is_rolled_back_and_the_order_still_placed(
    svc: Service, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    confirm = SqlOrders.confirm_order
    failures = [RuntimeError("orders down")]

    async def down_once(self: SqlOrders, command: StepCommand) -> Outcome:
        if failures:
            raise failures.pop()
        return await confirm(self, command)

    monkeypatch.setattr(SqlOrders, "confirm_order", down_once)
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 3),)))
    # Placed without its calls: on SQLite after the placement's own try at them failed.
    assert placed.state is not None and placed.state.status is SagaStatus.STOCK_RESERVING
    fallbacks = [r for r in caplog.records if "placing it alone" in r.getMessage()]
    assert [r.getMessage() for r in fallbacks] == (
        [
            f"saga {placed.saga_id}: a call failed in its placement's transaction "
            "(RuntimeError('orders down')); placing it alone"
        ]
        if database_url.startswith("sqlite")
        else []
    )
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)

    assert not failures
    # The reservation made beside the failed call was rolled back with it: made again once only.
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 3)
    order = await svc.read.order(placed.order_id)
    assert order is not None and order.status == "CONFIRMED"


async def test_an_orders_picks_are_cleared_once_its_stock_is_released_or_dispatched(svc: Service) -> None:
    placed = [await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 2),))) for _ in "ab"]
    for order in placed:
        await wait_for_status(svc, order.saga_id, SagaStatus.COMPLETED)
    cancelled, dispatched = placed
    await svc.orchestrator.cancel_order(cancelled.saga_id, Actor("c-1", "customer"))
    await wait_for_status(svc, cancelled.saga_id, SagaStatus.FAILED)
    shipped = await svc.read.order(dispatched.order_id)
    assert shipped is not None and shipped.shipment_id is not None
    await svc.orchestrator.dispatch_shipment(dispatched.saga_id, shipped.shipment_id)

    for order in placed:
        row = await svc.read.order(order.order_id)
        assert row is not None and row.status in ("CANCELLED", "SHIPPED") and row.picks == []
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (8, 0)


async def test_a_shortage_fails_the_saga_and_cancels_the_order(svc: Service) -> None:
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 11),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.FAILED)

    saga = await svc.read.saga(placed.saga_id)
    assert saga is not None
    assert saga.failure_reason == "insufficient stock: SKU-1 short by 1 (requested 11, available 10)"
    order = await svc.read.order(placed.order_id)
    assert order is not None and order.status == "CANCELLED"
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 0)


async def test_the_read_model_equals_the_fold_of_the_journal(svc: Service) -> None:
    ids = [
        await svc.orchestrator.place_order(PlaceOrder(f"c-{n}", (OrderLine("SKU-1", q),)))
        for n, q in enumerate([2, 20, 1])
    ]
    for placed in ids:
        await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED, SagaStatus.FAILED)

    for placed in ids:

        async def load(tx: Transaction, saga_id: str = placed.saga_id) -> object:
            return await tx.sagas.load(saga_id)

        events = await svc.runner.run(load)
        state = fold(placed.saga_id, events)  # type: ignore[arg-type]
        saga, order = await svc.read.saga(placed.saga_id), await svc.read.order(placed.order_id)
        assert saga is not None and order is not None
        assert saga._asdict() == saga_row(state)
        assert order._asdict() == order_row(state)
        timeline = [r._asdict() for r in await svc.read.saga_timeline(placed.saga_id)]
        positions = [row.pop("position") for row in timeline]
        assert timeline == timeline_rows(replay(placed.saga_id, events))  # type: ignore[arg-type]
        assert positions == sorted(set(positions)) and positions[0] >= 1  # the journal's, in order
        assert timeline[-1]["status"] == state.status.value


async def test_an_idempotency_key_yields_one_order_even_when_requests_race(svc: Service) -> None:
    command = PlaceOrder("c-1", (OrderLine("SKU-1", 1),), idempotency_key="once")
    results = await asyncio.gather(*(svc.orchestrator.place_order(command) for _ in range(8)))
    assert len({r.saga_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with pytest.raises(IdempotencyKeyReused):
        await svc.orchestrator.place_order(
            PlaceOrder("c-2", (OrderLine("SKU-1", 1),), idempotency_key="once")
        )
    await wait_for_status(svc, results[0].saga_id, SagaStatus.COMPLETED)
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert level.reserved == 1


async def test_a_stale_append_is_refused_as_a_concurrency_conflict(svc: Service) -> None:
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)

    async def load(tx: Transaction) -> object:
        return await tx.sagas.load(placed.saga_id)

    events = await svc.runner.run(load)
    stale = fold(placed.saga_id, events[:3])  # type: ignore[index]

    async def append_stale(tx: Transaction) -> None:
        await tx.sagas.append(SagaChange.from_state(stale).apply([events[3]]), None)  # type: ignore[index]

    with pytest.raises(ConcurrencyConflict):
        await svc.runner.run(append_stale)


def saga_update(saga_id: str, expected: int, status: str) -> dict[str, object]:
    """A read-model update of a saga as an append gathers it: from `expected` to the next version."""
    at = NOW + timedelta(minutes=expected)
    changes = {
        "status": status,
        "failure_reason": None,
        "version": expected + 1,
        "current_step": None,
        "next_wakeup_at": None,
        "steps": [{"status": status}, {"status": "LAST"}],
        "updated_at": at,
        "failed_step": None,
        "duration_ms": expected,
        "failure_kind": None,
    }
    return {"key": saga_id, "expected": expected, **{f"new_{c}": v for c, v in changes.items()}}


async def test_read_model_updates_of_many_sagas_and_two_of_one_saga_commit_together(svc: Service) -> None:
    placed = [await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),))) for _ in "ab"]
    versions = {}
    for order in placed:
        await wait_for_status(svc, order.saga_id, SagaStatus.COMPLETED)
        saga = await svc.read.saga(order.saga_id)
        assert saga is not None
        versions[order.saga_id] = saga.version
    first, second = (order.saga_id for order in placed)

    async def update(conn: Db) -> None:
        writes = conn.deferred(SagaWrites)
        writes.saga_updates += [
            saga_update(first, versions[first], "ONE"),
            saga_update(second, versions[second], "ONE"),
            saga_update(first, versions[first] + 1, "TWO"),  # expects what the first one wrote
        ]
        await writes.flush()

    await svc.write(update)

    shown = {saga_id: await svc.read.saga(saga_id) for saga_id in (first, second)}
    assert {s.id: (s.status, s.version, s.steps) for s in shown.values() if s is not None} == {
        first: ("TWO", versions[first] + 2, [{"status": "TWO"}, {"status": "LAST"}]),
        second: ("ONE", versions[second] + 1, [{"status": "ONE"}, {"status": "LAST"}]),
    }


async def test_a_read_model_update_from_a_version_it_no_longer_has_is_a_concurrency_conflict(
    svc: Service,
) -> None:
    placed = await svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)
    saga = await svc.read.saga(placed.saga_id)
    assert saga is not None

    async def update(conn: Db) -> None:
        writes = conn.deferred(SagaWrites)
        writes.saga_updates += [
            saga_update(placed.saga_id, v, "MOVED") for v in (saga.version, saga.version - 1)
        ]
        await writes.flush()

    with pytest.raises(ConcurrencyConflict):
        await svc.write(update)
    after = await svc.read.saga(placed.saga_id)
    assert after is not None and (after.status, after.version) == (saga.status, saga.version)


async def test_an_integrity_error_other_than_a_journal_clash_is_not_a_concurrency_conflict(
    svc: Service,
) -> None:
    async def append_without_a_type(conn: Db) -> None:
        writes = conn.deferred(SagaWrites)
        event = {"saga_id": "s", "sequence": 1, "type": None, "version": 1, "data": {}, "recorded_at": NOW}
        writes.events.append(event)
        await writes.flush()

    with pytest.raises(IntegrityError):  # a fault to report, not a race to run again
        await svc.write(append_without_a_type)


async def test_release_restores_stock_once_however_often_it_runs(svc: Service) -> None:
    async def reserve_then_release_twice(tx: Transaction) -> tuple[object, ...]:
        command = command_for("saga-x", OrderLine("SKU-1", 4))
        reserved = await tx.inventory.reserve_stock(command)
        again = await tx.inventory.reserve_stock(command)
        await tx.inventory.release_stock(command)
        await tx.inventory.release_stock(command)
        return reserved, again

    reserved, again = await svc.runner.run(reserve_then_release_twice)
    assert reserved == again  # the second reserve with the same command id found the first
    assert reserved.picks == (Pick("W1", "A", "SKU-1", 4),)  # type: ignore[attr-defined]
    [level] = await svc.catalog.stock_levels("SKU-1")
    assert (level.on_hand, level.reserved) == (10, 0)


async def test_a_repeated_shipment_command_finds_the_shipment_it_made(svc: Service) -> None:
    first = replace(
        command_for("saga-s", OrderLine("SKU-1", 2), step="CREATE_SHIPMENT"),
        picks=(Pick("W1", "A", "SKU-1", 2),),
        shipment_id="shipment-s",
        warehouse_code="W1",
    )
    again = replace(first, picks=(Pick("W1", "A", "SKU-1", 1),), at=first.at + timedelta(seconds=1))

    async def create(tx: Transaction) -> object:
        return await tx.shipments.create_shipment(first)

    async def create_again(tx: Transaction) -> object:
        return await tx.shipments.create_shipment(again)

    assert await svc.runner.run(create) == Succeeded()
    assert await svc.runner.run(create_again) == Succeeded()

    async def stored(db: Db) -> list[tuple[object, ...]]:
        rows = await db.execute(select(shipments.c.id, shipments.c.picks, shipments.c.created_at))
        return [tuple(row) for row in rows]

    [(shipment_id, picks, created_at)] = await svc.write(stored)
    assert (shipment_id, picks, created_at) == ("shipment-s", picks_json(first.picks), first.at)


async def test_an_order_changed_in_the_transaction_that_created_it_is_stored_as_changed(svc: Service) -> None:
    # New orders are inserted together, at the commit or before the first change of an order.
    created, cancelled = command_for("saga-c"), command_for("saga-x")

    async def create_then_change(tx: Transaction) -> tuple[object, ...]:
        await tx.orders.create_order(created)
        await tx.orders.create_order(cancelled)
        return await tx.orders.confirm_order(created), await tx.orders.cancel_order(cancelled)

    assert await svc.runner.run(create_then_change) == (Succeeded(), Succeeded())

    async def stored(db: Db) -> dict[object, object]:
        rows = await db.execute(select(orders.c.id, orders.c.status, orders.c.updated_at))
        return {row.id: (row.status, row.updated_at) for row in rows}

    assert await svc.write(stored) == {
        created.order_id: ("CONFIRMED", created.at),
        cancelled.order_id: ("CANCELLED", cancelled.at),
    }


async def test_a_restarted_service_resumes_unfinished_sagas(database_url: str) -> None:
    hold = Hold(Participant.SHIPMENT)
    first = await start_service(database_url, gate=hold)
    await stock_catalog(first)
    placed = await first.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 2),)))
    await wait_for_status(first, placed.saga_id, SagaStatus.SHIPMENT_CREATING)
    await first.stop()

    second = await start_service(database_url)
    try:
        await wait_for_status(second, placed.saga_id, SagaStatus.COMPLETED)
        order = await second.read.order(placed.order_id)
        assert order is not None and order.shipment_id
    finally:
        await second.stop()


async def test_a_stopped_service_refuses_work_rather_than_leaving_it_waiting(database_url: str) -> None:
    svc = await start_service(database_url)
    await svc.stop()
    with pytest.raises(RuntimeError, match="not started"):
        await asyncio.wait_for(svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("SKU-1", 1),))), 5)


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    """The interpreter's default thresholds for the collector during the test, which the suite
    raises as a serving process does (tests/conftest.py)."""
    suite = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*suite)


async def start_freezing(url: str) -> Service:
    """A service started as `ordersaga serve` starts it, freezing what start-up made."""
    svc = Service(Settings(database_url=url, policy=FAST, freeze_start_up=True))
    await svc.start()
    return svc


def test_serve_freezes_what_start_up_made() -> None:
    assert settings_from(parser().parse_args(["serve"])).freeze_start_up


async def test_a_running_service_keeps_what_start_up_made_out_of_collections(
    database_url: str, default_thresholds: tuple[int, int, int]
) -> None:
    thresholds = default_thresholds
    svc = await start_freezing(database_url)
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (SERVING_FIRST_GENERATION_THRESHOLD, *thresholds[1:])
    finally:
        await svc.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


async def test_a_service_not_asked_to_freeze_leaves_the_collector_alone(
    database_url: str, default_thresholds: tuple[int, int, int]
) -> None:
    frozen, thresholds = gc.get_freeze_count(), default_thresholds  # see tests/conftest.py
    svc = await start_service(database_url)
    try:
        # Nothing more frozen (frozen objects that lose their last reference are freed all the same).
        assert gc.get_freeze_count() <= frozen and gc.get_threshold() == thresholds
    finally:
        await svc.stop()


async def test_the_frozen_objects_are_given_back_when_the_last_service_stops(
    tmp_path: Path, default_thresholds: tuple[int, int, int]
) -> None:
    thresholds = default_thresholds
    first = await start_freezing(f"sqlite+aiosqlite:///{tmp_path / 'first.db'}")
    second = await start_freezing(f"sqlite+aiosqlite:///{tmp_path / 'second.db'}")
    third = await start_service(f"sqlite+aiosqlite:///{tmp_path / 'third.db'}")  # freezes nothing
    await third.stop()
    assert gc.get_freeze_count() > 0
    await first.stop()
    assert gc.get_freeze_count() > 0  # the second still runs on what start-up made
    assert gc.get_threshold()[0] == SERVING_FIRST_GENERATION_THRESHOLD
    await second.stop()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_start_up_s_garbage_is_collected_not_frozen(database_url: str) -> None:
    gc.disable()  # no collection of its own may free the cycle before start-up freezes
    try:
        garbage = weakref.ref(_Cycle())
        svc = await start_freezing(database_url)
        try:
            gc.collect()
            assert garbage() is None
        finally:
            await svc.stop()
    finally:
        gc.enable()


async def test_work_sharing_a_commit_runs_in_lock_order(svc: Service) -> None:
    ran: list[str] = []

    def work(name: str) -> Callable[[Db], Awaitable[None]]:
        async def record(_: Db) -> None:
            ran.append(name)

        return record

    # Queued together, so that they share one commit: stock-taking work comes in SKU order, whatever
    # order it was queued in, and two commits being written at once take their rows in one order.
    await asyncio.gather(*(svc.runner.run_on_connection(work(k), lock_order=k) for k in ["C", "A", "B"]))

    assert ran == ["A", "B", "C"]
