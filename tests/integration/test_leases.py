"""Saga leases on PostgreSQL, with two services over one database in one event loop: the process that
places a saga holds its lease; one whose lease lapsed (a long pause, here its lease rounds stopped)
steps back without writing, even when its participant answers afterwards; another claims the expired
lease and finishes the saga; a settled saga keeps no lease. And the rule by which commits take and
drop leases."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from api.service import Service
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant, SagaChange, SagaStarted, SagaStatus, start
from domain.model.values import OrderLine
from persistence.connection import AsyncDb
from persistence.database import make_engine
from persistence.fleet.leases import Fleet, LeaseBook, lease_change
from persistence.tables import journal, reservations, saga_leases
from tests.gates import Hold
from tests.integration.support import FAST, stock_catalog, wait_for_status

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
LEASE_TTL = timedelta(seconds=1)
# The held reservation must not time out before the other process has taken the saga over.
POLICY = replace(FAST, reserve_timeout=timedelta(seconds=20))


async def leases_of(database_url: str) -> dict[str, str]:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            return {r.saga_id: r.owner for r in await conn.execute(select(saga_leases))}
    finally:
        await engine.dispose()


async def count(database_url: str, table: object, saga_or_order: str) -> int:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            if table is journal:
                rows = await conn.execute(
                    select(journal.c.sequence).where(journal.c.saga_id == saga_or_order)
                )
            else:
                rows = await conn.execute(
                    select(reservations).where(reservations.c.order_id == saga_or_order)
                )
            return len(rows.all())
    finally:
        await engine.dispose()


def service(database_url: str, instance: str, gate: Hold | None = None) -> Service:
    settings = Settings(database_url=database_url, policy=POLICY, lease_ttl=LEASE_TTL, instance=instance)
    return Service(settings, gate=gate)


@postgresql_only
async def test_a_process_whose_lease_lapsed_steps_back_and_another_finishes_its_saga(
    database_url: str,
) -> None:
    held = Hold(Participant.INVENTORY)
    paused, other = service(database_url, "paused", held), service(database_url, "other")
    await paused.start()
    await other.start()
    try:
        await stock_catalog(paused)
        placed = await paused.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))
        assert await leases_of(database_url) == {placed.saga_id: "paused"}
        assert paused.leases is not None and paused.leases.holds(placed.saga_id)

        # A long pause: no renewals, so the lease lapses here, then expires in the database.
        await paused.background.stop()
        await wait_for_status(other, placed.saga_id, SagaStatus.COMPLETED, seconds=10)
        assert not paused.leases.holds(placed.saga_id)

        # The paused process's reservation comes back only now: it must not even try to write.
        transactions = 0
        run = paused.runner.run

        async def counted(work):  # type: ignore[no-untyped-def]
            nonlocal transactions
            transactions += 1
            return await run(work)

        paused.runner.run = counted  # type: ignore[method-assign]
        held.release(Participant.INVENTORY)
        for _ in range(100):
            if paused.orchestrator.running == 0:
                break
            await asyncio.sleep(0.02)
        assert paused.orchestrator.running == 0 and transactions == 0
        row = await other.read.saga(placed.saga_id)
        assert row is not None and row.status == SagaStatus.COMPLETED.value
        assert await count(database_url, journal, placed.saga_id) == row.version
        assert await count(database_url, reservations, placed.order_id) == 1
        assert await leases_of(database_url) == {}, "a finished saga keeps no lease"
    finally:
        await other.stop()
        await paused.stop()


@postgresql_only
async def test_a_renewal_that_did_not_extend_a_lease_does_not_lengthen_the_belief_in_it(
    database_url: str,
) -> None:
    """A renewal skips the rows a commit of this process holds locked, and does not see a take not
    yet committed; a lease taken by such a commit is believed only until its own expiry."""
    now = 0.0
    engine = make_engine(database_url)
    book = LeaseBook(engine, Fleet("me", LEASE_TTL), monotonic=lambda: now)
    started = SagaStarted("o-1", "c", (OrderLine("SKU-1", 1),), datetime.now(UTC))
    try:
        async with engine.connect() as conn:
            await conn.begin()
            await book.write(AsyncDb(conn), {"s-1": True})  # sent at 0: expires a lease time after
            now = 0.5
            assert await book.renew() == (set(), set())  # it began at 0.5 but could not touch s-1
            await conn.commit()
        book.on_change(SagaChange(None, (started,), start("s-1", started), ()))
        now = 0.9
        assert book.holds("s-1")
        now = 1.1
        assert not book.holds("s-1"), "believed past the expiry the database holds"

        now = 2.0  # expired in the database, nobody claimed it: a renewal extends it from its start
        assert await book.renew() == ({"s-1"}, set())
        now = 2.9
        assert book.holds("s-1")
        now = 3.0
        assert not book.holds("s-1")
    finally:
        await engine.dispose()


@postgresql_only
async def test_a_lease_this_processs_own_commit_dropped_is_not_reported_lost(database_url: str) -> None:
    """A commit that settled a saga dropped its lease, and a renewal runs before the commit is
    announced (or while it is): the lease is gone from the database, but not lost to another process,
    so nothing is let go and nothing is warned about."""
    engine = make_engine(database_url)
    book = LeaseBook(engine, Fleet("me", LEASE_TTL))
    started = SagaStarted("o-1", "c", (OrderLine("SKU-1", 1),), datetime.now(UTC))
    placed = start("s-1", started)
    try:
        async with engine.begin() as conn:
            await book.write(AsyncDb(conn), {"s-1": True})
        book.on_change(SagaChange(None, (started,), placed, ()))
        assert await book.renew() == ({"s-1"}, set())

        async with engine.begin() as conn:
            await book.write(AsyncDb(conn), {"s-1": False})  # settled: committed, not yet announced
        assert await book.renew() == (set(), set())
        assert not book.holds("s-1")

        settled = SagaChange(placed, (), replace(placed, status=SagaStatus.COMPLETED), ())
        for committed in (True, False):  # the drop committed, or its commit still holding the row
            async with engine.begin() as conn:
                await book.write(AsyncDb(conn), {"s-1": True})
            book.on_change(SagaChange(None, (started,), placed, ()))
            async with engine.connect() as conn:
                await conn.begin()
                await book.write(AsyncDb(conn), {"s-1": False})
                if committed:
                    await conn.commit()
                renewing = asyncio.create_task(book.renew())
                await asyncio.sleep(0)  # the renewal has begun, believing in s-1
                book.on_change(settled)  # announced before the renewal's reads answer
                assert await renewing == (set(), set())
                assert not book.holds("s-1")
                if not committed:
                    await conn.commit()

        async with engine.begin() as conn:  # taken again, then claimed by another process
            await book.write(AsyncDb(conn), {"s-1": True})
        book.on_change(SagaChange(None, (started,), placed, ()))
        async with engine.begin() as conn:
            await conn.execute(saga_leases.update().values(owner="other"))
        assert await book.renew() == (set(), {"s-1"})
    finally:
        await engine.dispose()


def test_a_commit_takes_the_lease_when_it_sets_a_saga_moving_and_drops_it_when_it_settles() -> None:
    now = datetime.now(UTC)
    placed = start("s-1", SagaStarted("o-1", "c", (OrderLine("SKU-1", 1),), now))
    running = replace(placed, status=SagaStatus.STOCK_RESERVING)
    parked = replace(placed, status=SagaStatus.NEEDS_ATTENTION)
    finished = replace(placed, status=SagaStatus.COMPLETED)

    assert lease_change(None, placed) is True  # placed
    assert lease_change(placed, running) is None  # moving on: the lease stays as it is
    assert lease_change(running, parked) is False  # parked for an operator
    assert lease_change(parked, running) is True  # an operator sent it on, from this process
    assert lease_change(running, finished) is False
