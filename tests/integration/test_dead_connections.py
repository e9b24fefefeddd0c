"""A pooled connection whose server end is gone (a backend terminated, a server restarted) is
replaced when it is next taken from the pool, so no request meets it: on PostgreSQL, where such
connections happen."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from api.service import Service
from api.settings import Settings
from persistence.database import make_engine
from tests.api.server import graphql_client, place, stock

READ = "{ products { sku onHand } sagaMetrics { completed } }"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_requests_after_every_backend_was_terminated_are_answered(database_url: str) -> None:
    async with graphql_client(Service(Settings(database_url=database_url)), timeout=30) as gql:
        await stock(gql, quantity=10)
        first = await place(gql, 1)
        await gql.wait_for_saga(first["saga"]["id"], "COMPLETED")

        admin = make_engine(database_url, writer=False)
        try:
            async with admin.connect() as conn:
                others = "datname = current_database() AND pid <> pg_backend_pid()"
                pids = list(await conn.scalars(text(f"SELECT pid FROM pg_stat_activity WHERE {others}")))
                await conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                    {"pids": pids},
                )
                # pg_terminate_backend only signals; the connections close as their backends exit.
                alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))"
                for _ in range(1000):
                    if not await conn.scalar(text(alive), {"pids": pids}):
                        break
                    await conn.commit()  # a transaction sees one snapshot of pg_stat_activity
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"backends {pids} still alive")
        finally:
            await admin.dispose()
        assert pids
        # A backend leaves pg_stat_activity before its process exits and closes its socket, and a
        # pooled connection knows it is closed only once that close has reached this process; a
        # request in between meets the race `persistence.database._refuse_closed` documents.
        await asyncio.sleep(0.5)

        for _ in range(3):  # more than one pooled connection is taken, and replaced
            assert (await gql(READ))["products"][0]["onHand"] == 10
        again = await place(gql, 1)
        assert again["userErrors"] == []
        await gql.wait_for_saga(again["saga"]["id"], "COMPLETED")
