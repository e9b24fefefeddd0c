"""Commit notices across processes on PostgreSQL, with two services over one database in one event
loop: a feed on one follows sagas the other drives, also across a lost LISTEN connection, whose
missed notifications are made up from the timeline once it is back."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from api.graphql.journal import SagaUpdate
from api.graphql.subscriptions import updates_of_all_sagas
from api.outbound.warehouse import REFRESH_S
from api.service import Service
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.saga import SagaStatus
from domain.model.values import OrderLine
from persistence.database import make_engine
from tests.integration.support import FAST, stock_catalog, wait_for_status
from tests.polling import eventually

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
COMPLETED_SAGA = 7  # transitions of a saga that completes


async def drop_listening_connection(database_url: str, instance: str) -> None:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            dropped = await conn.execute(
                # This database's only: another test process may listen under the same name.
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": f"ordersaga listen {instance}"},
            )
            assert dropped.all() == [(True,)]
    finally:
        await engine.dispose()


def timed_out(record: logging.LogRecord) -> bool:
    """A record of the catch-up's read finding no free connection in the read pool."""
    return record.exc_info is not None and isinstance(record.exc_info[1], sqlalchemy.exc.TimeoutError)


async def take(feed: object, count: int) -> list[SagaUpdate]:
    async with asyncio.timeout(15):
        return [await anext(feed) for _ in range(count)]  # type: ignore[call-overload]


@postgresql_only
async def test_a_feed_follows_another_process_across_a_lost_listening_connection(database_url: str) -> None:
    driver = Service(Settings(database_url=database_url, policy=FAST, instance="driver"))
    follower = Service(Settings(database_url=database_url, policy=FAST, instance="follower"))
    await driver.start()
    await follower.start()
    try:
        await stock_catalog(driver)
        feed = updates_of_all_sagas(follower.tail, follower.pacer, None, None)
        first = asyncio.ensure_future(anext(feed))
        await eventually(lambda: follower.tail.followers == 1, "the feed to follow the journal")

        heard = (await driver.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))).saga_id
        seen = [await first, *await take(feed, COMPLETED_SAGA - 1)]
        assert [(u.saga_id, u.sequence) for u in seen] == [(heard, n) for n in range(1, 8)]

        # Committed while the follower is not listening: its notifications are gone for it.
        await drop_listening_connection(database_url, "follower")
        missed = (await driver.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))).saga_id
        await wait_for_status(driver, missed, SagaStatus.COMPLETED)
        caught_up = await take(feed, COMPLETED_SAGA)
        await feed.aclose()
        assert [(u.saga_id, u.sequence) for u in caught_up] == [(missed, n) for n in range(1, 8)]
    finally:
        await follower.stop()
        await driver.stop()


@postgresql_only
async def test_the_listener_outlives_a_catch_up_that_finds_no_read_connection(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After its connection drops, the listener catches up through the read pool; a pool with no
    free connection in time raises SQLAlchemy's TimeoutError there, which must cost a retry, not the
    listener: other processes' commits are heard again once a connection is free."""
    driver = Service(Settings(database_url=database_url, policy=FAST, instance="driver"))
    settings = Settings(database_url=database_url, policy=FAST, instance="follower", read_pool_size=1)
    follower = Service(replace(settings, pool_timeout=timedelta(milliseconds=200)))
    await driver.start()
    await follower.start()
    try:
        await stock_catalog(driver)
        held = await follower._reader.connect()  # the read pool's only connection, taken
        try:
            await drop_listening_connection(database_url, "follower")
            await eventually(lambda: any(timed_out(r) for r in caplog.records), "a catch-up to fail")
        finally:
            await held.close()
        await eventually(follower.commit_listener.listening.is_set, "listening again", seconds=15)  # type: ignore[union-attr]
        feed = updates_of_all_sagas(follower.tail, follower.pacer, None, None)
        first = asyncio.ensure_future(anext(feed))
        await eventually(lambda: follower.tail.followers == 1, "the feed to follow the journal")
        heard = (await driver.orchestrator.place_order(PlaceOrder("c", (OrderLine("SKU-1", 1),)))).saga_id
        seen = [await first, *await take(feed, COMPLETED_SAGA - 1)]
        await feed.aclose()
        assert {u.saga_id for u in seen} == {heard}
        assert await follower.is_ready()
    finally:
        await follower.stop()
        await driver.stop()


@postgresql_only
async def test_a_read_pool_busy_past_its_timeout_takes_down_no_background_task(database_url: str) -> None:
    """The tasks that read the database on a schedule (the warehouses' service URLs, every second)
    meet a pool with no free connection as a transient error: they try again, they do not die."""
    settings = Settings(database_url=database_url, policy=FAST, read_pool_size=1)
    svc = Service(replace(settings, pool_timeout=timedelta(milliseconds=200)))
    await svc.start()
    try:
        held = await svc._reader.connect()  # the read pool's only connection, taken
        try:
            await asyncio.sleep(2.5 * REFRESH_S)  # two refreshes or more, each finding none free
            assert svc.background.down == {}
        finally:
            await held.close()
        assert await svc.is_ready()
    finally:
        await svc.stop()
