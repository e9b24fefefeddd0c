"""Stock reservations under contention, on SQLite and PostgreSQL: compare-and-swap conflicts are retried
and counted, exhausted retries are transient (never a shortage), a multi-line reservation is all or
nothing, and the database itself refuses stock rows that break onHand = available + reserved. On
PostgreSQL, a stock row another transaction holds holds up only the work that needs it: that work
waits, however long, and every other saga's orders and reads go on meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.service import Service
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.interventions import Actor
from domain.model.saga import Outcome, Rejected, SagaStatus, Succeeded, Unavailable
from domain.model.values import OrderLine, Pick, StorageCondition
from domain.ports import StepCommand, Transaction
from persistence.connection import AsyncDb, Db
from persistence.database import WRITER_LOCK_TIMEOUT_MS, make_engine
from persistence.tables import stock
from persistence.write import catalog
from persistence.write.participants import RESERVE_ATTEMPTS, SqlInventory
from persistence.write.stock_locks import StockBusy
from tests.integration.commands import command_for
from tests.integration.interleave import after_stock_reads, contend_for_stock
from tests.integration.support import FAST, TERMINAL, start_service, through_sqlalchemy, wait_for_status
from tests.polling import eventually

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
async def svc(database_url: str) -> AsyncIterator[Service]:
    """Warehouses W1 and W2 with one ambient section A each; ambient products APPLE and BREAD."""
    service = await start_service(database_url)
    await service.write(apples_and_bread)
    yield service
    await service.stop()


async def apples_and_bread(conn: Db) -> None:
    for code in ("W1", "W2"):
        await catalog.register_warehouse(conn, code, code, [("A", StorageCondition.AMBIENT)])
    for sku in ("APPLE", "BREAD"):
        await catalog.register_product(conn, sku, sku.title(), StorageCondition.AMBIENT)


async def receive(svc: Service, sku: str, warehouse_code: str, quantity: int) -> None:
    await svc.write(
        lambda conn: catalog.receive_stock(conn, sku, warehouse_code, "A", quantity, svc.clock.now())
    )


async def reserve(svc: Service, command: StepCommand) -> Outcome:
    async def work(tx: Transaction) -> Outcome:
        return await tx.inventory.reserve_stock(command)

    return await svc.runner.run(work)


async def levels(svc: Service, sku: str) -> dict[str, tuple[int, int]]:
    """(onHand, reserved) of `sku` by warehouse."""
    return {r.warehouse_code: (r.on_hand, r.reserved) for r in await svc.catalog.stock_levels(sku)}


def contention(svc: Service) -> tuple[int, int, int]:
    m = svc.metrics
    return m.stock_reservations, m.stock_conflicts, m.stock_conflicts_exhausted


async def test_a_reservation_whose_rows_move_under_it_reads_again_and_succeeds(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    contend_for_stock(monkeypatch, ["APPLE"], times=2)

    outcome = await reserve(svc, command_for("s-1", OrderLine("APPLE", 3)))

    assert outcome == Succeeded(picks=(Pick("W1", "A", "APPLE", 3),))
    assert contention(svc) == (1, 2, 0)
    assert await levels(svc, "APPLE") == {"W1": (5, 3)}


async def test_a_reservation_that_conflicts_on_every_attempt_is_transient_never_a_shortage(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    contend_for_stock(monkeypatch, ["APPLE"], times=RESERVE_ATTEMPTS)
    command = command_for("s-1", OrderLine("APPLE", 3))

    outcome = await reserve(svc, command)

    assert isinstance(outcome, Unavailable) and "contended" in outcome.reason
    assert contention(svc) == (1, RESERVE_ATTEMPTS, 1)
    assert await levels(svc, "APPLE") == {"W1": (5, 0)}
    # Nothing of the exhausted attempt was kept, so the saga's retry reserves afresh.
    assert await reserve(svc, command) == Succeeded(picks=(Pick("W1", "A", "APPLE", 3),))
    assert await levels(svc, "APPLE") == {"W1": (5, 3)}


async def test_a_multi_line_reservation_takes_nothing_when_a_competitor_takes_the_last_units_of_a_line(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    await receive(svc, "BREAD", "W1", 3)
    rival = command_for("rival", OrderLine("BREAD", 3))

    async def rival_takes_the_bread(conn: Db) -> None:
        taken = await SqlInventory(conn, svc.metrics).reserve_stock(rival)
        assert taken == Succeeded(picks=(Pick("W1", "A", "BREAD", 3),))

    after_stock_reads(monkeypatch, rival_takes_the_bread)

    # APPLE comes first in key order, so its swap succeeds before BREAD's fails, and must be undone.
    outcome = await reserve(svc, command_for("s-1", OrderLine("APPLE", 2), OrderLine("BREAD", 3)))

    assert outcome == Rejected("insufficient stock: BREAD short by 3 (requested 3, available 0)")
    assert svc.metrics.stock_conflicts == 1
    assert await levels(svc, "APPLE") == {"W1": (5, 0)}
    assert await levels(svc, "BREAD") == {"W1": (3, 3)}


@postgresql_only
async def test_a_multi_line_reservation_takes_every_row_in_one_statement_without_a_savepoint(
    svc: Service,
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    await receive(svc, "APPLE", "W2", 5)
    await receive(svc, "BREAD", "W1", 3)

    with through_sqlalchemy() as executed:
        outcome = await reserve(svc, command_for("s-1", OrderLine("APPLE", 7), OrderLine("BREAD", 3)))

    assert outcome == Succeeded(
        picks=(Pick("W1", "A", "APPLE", 5), Pick("W1", "A", "BREAD", 3), Pick("W2", "A", "APPLE", 2))
    )
    assert [s for s in executed if "SAVEPOINT" in s] == []
    assert await levels(svc, "APPLE") == {"W1": (5, 5), "W2": (5, 2)}
    assert await levels(svc, "BREAD") == {"W1": (3, 3)}


async def test_a_multi_line_order_racing_competitors_gets_every_line_or_none(svc: Service) -> None:
    await receive(svc, "APPLE", "W1", 5)
    await receive(svc, "BREAD", "W1", 3)
    both = PlaceOrder("both", (OrderLine("APPLE", 2), OrderLine("BREAD", 3)))
    rivals = [PlaceOrder(f"rival-{n}", (OrderLine("BREAD", 1),)) for n in range(3)]

    placed = await asyncio.gather(*(svc.orchestrator.place_order(c) for c in [both, *rivals]))
    outcomes = [await wait_for_status(svc, p.saga_id, *TERMINAL) for p in placed]

    if outcomes[0] == SagaStatus.COMPLETED.value:
        assert outcomes[1:] == [SagaStatus.FAILED.value] * 3
        assert await levels(svc, "APPLE") == {"W1": (5, 2)}
    else:
        assert outcomes == [SagaStatus.FAILED.value] + [SagaStatus.COMPLETED.value] * 3
        saga = await svc.read.saga(placed[0].saga_id)
        assert saga is not None and saga.failure_reason.startswith("insufficient stock: BREAD short by")
        assert await levels(svc, "APPLE") == {"W1": (5, 0)}
    assert await levels(svc, "BREAD") == {"W1": (3, 3)}


@pytest.mark.parametrize(
    "change",
    [{"reserved": 6}, {"reserved": -1}, {"on_hand": 1}, {"on_hand": -1}],
    ids=["reserved-above-on-hand", "negative-reserved", "on-hand-below-reserved", "negative-on-hand"],
)
async def test_the_database_refuses_stock_that_breaks_on_hand_equals_available_plus_reserved(
    svc: Service, change: dict[str, int]
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    await reserve(svc, command_for("s-1", OrderLine("APPLE", 2)))

    with pytest.raises(IntegrityError):
        await svc.write(lambda conn: conn.execute(update(stock).values(**change)))

    assert await levels(svc, "APPLE") == {"W1": (5, 2)}


async def test_a_repeated_reservation_finds_the_first_and_takes_nothing_more(svc: Service) -> None:
    await receive(svc, "APPLE", "W1", 5)
    await receive(svc, "BREAD", "W1", 3)
    command = command_for("s-1", OrderLine("APPLE", 2), OrderLine("BREAD", 1))
    first = await reserve(svc, command)

    again = await reserve(svc, command)

    assert again == first == Succeeded(picks=(Pick("W1", "A", "APPLE", 2), Pick("W1", "A", "BREAD", 1)))
    assert contention(svc) == (1, 0, 0)  # the repeat was no attempt of its own
    assert await levels(svc, "APPLE") == {"W1": (5, 2)}
    assert await levels(svc, "BREAD") == {"W1": (3, 1)}


@postgresql_only
async def test_a_repeated_reservation_finds_the_first_without_waiting_for_a_held_row(
    svc: Service, database_url: str
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    command = command_for("s-1", OrderLine("APPLE", 2))
    first = await reserve(svc, command)

    async with rows_held(database_url, "APPLE"):
        # Saga work that waited for the row would wait as long as it is held: past this.
        async with asyncio.timeout(10):
            again = await reserve(svc, command)

    assert again == first == Succeeded(picks=(Pick("W1", "A", "APPLE", 2),))
    assert contention(svc) == (1, 0, 0)
    assert await levels(svc, "APPLE") == {"W1": (5, 2)}


@contextlib.asynccontextmanager
async def rows_held(database_url: str, sku: str) -> AsyncIterator[AsyncConnection]:
    """Every stock row of `sku` locked by another session (as another process's commit would)
    until the block ends or the connection rolls back."""
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as holder:
            await holder.execute(select(stock.c.version).where(stock.c.sku == sku).with_for_update())
            yield holder
    finally:
        await engine.dispose()


@postgresql_only
async def test_in_a_shared_commit_a_row_held_among_free_ones_steps_the_work_aside_and_the_rest_commits(
    svc: Service, database_url: str
) -> None:
    for warehouse_code in ("W1", "W2"):
        await receive(svc, "APPLE", warehouse_code, 5)
    await receive(svc, "BREAD", "W1", 5)
    held = select(stock.c.version).where(stock.c.sku == "APPLE", stock.c.warehouse_code == "W2")
    engine = make_engine(database_url)
    try:
        async with engine.connect() as holder, engine.connect() as conn:
            await holder.execute(held.with_for_update())
            await conn.begin()
            db = AsyncDb(conn)
            inventory = SqlInventory(db, svc.metrics)  # a commit lane's: waits for no row
            with through_sqlalchemy() as executed:
                with pytest.raises(StockBusy) as busy:
                    await inventory.reserve_stock(command_for("s-1", OrderLine("APPLE", 7)))
                bread = await inventory.reserve_stock(command_for("s-2", OrderLine("BREAD", 2)))
            await db.before_commit()  # as a commit lane does: the deferred writes (movements) go out
            await conn.commit()
            await holder.rollback()
    finally:
        await engine.dispose()

    assert busy.value.sku == "APPLE" and not busy.value.failed
    assert bread == Succeeded(picks=(Pick("W1", "A", "BREAD", 2),))
    # The held row was skipped, not refused with an error: no savepoint was needed around it.
    assert [s for s in executed if "SAVEPOINT" in s] == []
    assert await levels(svc, "APPLE") == {"W1": (5, 0), "W2": (5, 0)}
    assert await levels(svc, "BREAD") == {"W1": (5, 2)}


# Longer than a writer may wait for a lock at once, so a wait that gave up would show.
HELD_S = 2.5 * WRITER_LOCK_TIMEOUT_MS / 1000


@pytest.mark.slow  # a row held past the lock timeout, for real
@postgresql_only
async def test_a_reservation_behind_a_row_held_past_the_lock_timeout_waits_for_it_and_succeeds(
    svc: Service, database_url: str
) -> None:
    await receive(svc, "APPLE", "W1", 5)
    async with rows_held(database_url, "APPLE") as holder:
        reservation = asyncio.create_task(reserve(svc, command_for("s-1", OrderLine("APPLE", 3))))
        # Past as many lock timeouts as a reservation has attempts: no count of waits gives up.
        await asyncio.sleep(RESERVE_ATTEMPTS * WRITER_LOCK_TIMEOUT_MS / 1000 + 1)
        assert not reservation.done()
        await holder.rollback()
        async with asyncio.timeout(30):
            outcome = await reservation

    assert outcome == Succeeded(picks=(Pick("W1", "A", "APPLE", 3),))
    assert svc.metrics.stock_conflicts >= 2  # met the row in a batch, then timed out waiting for it
    assert svc.metrics.stock_conflicts_exhausted == 0
    assert await levels(svc, "APPLE") == {"W1": (5, 3)}


@pytest.fixture
async def patient(database_url: str) -> AsyncIterator[Service]:
    """As `svc`, with 5 of APPLE and BREAD in W1, and step deadlines that work waiting for a held
    row does not outlast: what is tested is what waits for it, not the saga's timeouts."""
    minute = timedelta(minutes=1)
    policy = replace(FAST, reserve_timeout=minute, compensation_timeout=minute)
    service = Service(Settings(database_url=database_url, policy=policy))
    await service.start()
    await service.write(apples_and_bread)
    await receive(service, "APPLE", "W1", 5)
    await receive(service, "BREAD", "W1", 5)
    yield service
    await service.stop()


async def bread_goes_on_while_held(service: Service, held_since: float) -> None:
    """An order of BREAD completes and reads answer, all before the APPLE rows' hold ends."""
    async with asyncio.timeout(held_since + HELD_S - asyncio.get_running_loop().time()):
        bread = await service.orchestrator.place_order(PlaceOrder("b", (OrderLine("BREAD", 1),)))
        await wait_for_status(service, bread.saga_id, SagaStatus.COMPLETED)
        assert await levels(service, "BREAD") == {"W1": (5, 1)}


async def until_held_for(held_since: float, holder: AsyncConnection) -> None:
    """Keep the rows held for HELD_S in all, then let them go."""
    await asyncio.sleep(max(0.0, held_since + HELD_S - asyncio.get_running_loop().time()))
    await holder.rollback()


@pytest.mark.slow  # a row held for seconds
@postgresql_only
async def test_while_a_stock_row_is_held_orders_for_other_skus_and_reads_go_on(
    patient: Service, database_url: str
) -> None:
    async with rows_held(database_url, "APPLE") as holder:
        held_since = asyncio.get_running_loop().time()
        # One order of the held SKU for each commit lane, placed one after the other: a lane that
        # waited for the row would take the next one's placement and steps no more.
        apples = []
        for n in range(patient.settings.commit_lanes or 2):
            apples.append(
                await patient.orchestrator.place_order(PlaceOrder(f"a-{n}", (OrderLine("APPLE", 1),)))
            )
            await eventually(lambda: patient.metrics.stock_reservations >= len(apples), "its reservation")

        await bread_goes_on_while_held(patient, held_since)
        assert await levels(patient, "APPLE") == {"W1": (5, 0)}
        for apple in apples:
            saga = await patient.read.saga(apple.saga_id)
            assert saga is not None and saga.status == SagaStatus.STOCK_RESERVING.value
        await until_held_for(held_since, holder)

    for apple in apples:
        assert (
            await wait_for_status(patient, apple.saga_id, *TERMINAL, seconds=30) == SagaStatus.COMPLETED.value
        )
    assert await levels(patient, "APPLE") == {"W1": (5, len(apples))}


@pytest.mark.slow  # a row held for seconds
@postgresql_only
async def test_a_release_that_wrote_before_meeting_a_held_row_waits_for_it_whole(
    patient: Service, database_url: str
) -> None:
    placed = await patient.orchestrator.place_order(PlaceOrder("a", (OrderLine("APPLE", 2),)))
    await wait_for_status(patient, placed.saga_id, SagaStatus.COMPLETED)
    async with rows_held(database_url, "APPLE") as holder:
        held_since = asyncio.get_running_loop().time()
        # Compensating, the saga cancels its shipment and marks its reservation released before it
        # locks the stock it gives back.
        await patient.orchestrator.cancel_order(placed.saga_id, Actor("customer-1", "customer"))

        await bread_goes_on_while_held(patient, held_since)
        saga = await patient.read.saga(placed.saga_id)
        assert saga is not None and saga.status == SagaStatus.COMPENSATING.value
        assert await levels(patient, "APPLE") == {"W1": (5, 2)}
        await until_held_for(held_since, holder)

    assert await wait_for_status(patient, placed.saga_id, *TERMINAL, seconds=30) == SagaStatus.FAILED.value
    assert await levels(patient, "APPLE") == {"W1": (5, 0)}


@postgresql_only
async def test_a_deadlock_with_another_writer_is_a_conflict_and_the_reservation_retries(
    svc: Service, database_url: str
) -> None:
    await receive(svc, "APPLE", "W1", 1)
    await receive(svc, "APPLE", "W2", 1)
    row = select(stock.c.version).where(stock.c.sku == "APPLE").with_for_update()
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as holder:
            # The reservation's side must be the one to detect the deadlock (and so to be refused).
            await holder.execute(text("SET deadlock_timeout = '1min'"))
            await holder.execute(row.where(stock.c.warehouse_code == "W2"))
            reservation = asyncio.create_task(reserve(svc, command_for("s-1", OrderLine("APPLE", 2))))
            # Swaps go in key order: the reservation holds W1 once it waits for W2.
            blocked = text(
                "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            for _ in range(3000):
                if (await holder.execute(blocked)).scalar_one():
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the reservation never waited for the held row")
            await holder.execute(row.where(stock.c.warehouse_code == "W1"))
            await holder.rollback()
            outcome = await reservation
    finally:
        await engine.dispose()

    assert outcome == Succeeded(picks=(Pick("W1", "A", "APPLE", 1), Pick("W2", "A", "APPLE", 1)))
    # Read once in a shared batch (W2 held), once waiting (the deadlock), once to the end. On a busy
    # machine the holder may see the wait only after the lock timeout (2 s) ended it: then the
    # reservation waits once more before the deadlock, and every read but the last is a conflict.
    reservations, conflicts, exhausted = contention(svc)
    assert (conflicts, exhausted) == (reservations - 1, 0)
    assert conflicts >= 2
