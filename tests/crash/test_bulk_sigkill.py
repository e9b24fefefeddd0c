"""A bulk abort cut off by SIGKILL midway, on SQLite and PostgreSQL: every saga it was sent is either
aborted (and compensated after the restart) or untouched (still parked), never half-handled, and the
same call sent again aborts the rest and answers ALREADY for the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from api.graphql.bulk import MAX_BULK_SAGAS
from domain.model.saga import SagaAborted, SagaStatus
from persistence.database import make_engine
from persistence.tables import saga_view
from tests.api.server import place, stage, stock
from tests.crash.audit import audit, journal_of, saga_statuses
from tests.crash.server_process import ordersaga_serve

FAST_RETRIES = ("--retry-backoff=0.01",)
ABORT_SAGAS = """
mutation ($ids: [ID!]!) {
  abortSagas(input: {sagaIds: $ids, reason: "recalled"}) {
    results { sagaId outcome code } userErrors { code }
  }
}"""
PARKED = SagaStatus.NEEDS_ATTENTION.value


async def until_statuses(database_url: str, holds: Callable[[dict[str, str]], bool], what: str) -> None:
    """Poll the read model's statuses (saga id -> status) until `holds` them; fail after 45 s."""
    for _ in range(450):
        if holds(await saga_statuses(database_url)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"waited 45s for {what}")


async def abort_all(gql: Any, ids: list[str]) -> dict[str, tuple[str, str | None]]:
    payload = (await gql(ABORT_SAGAS, ids=ids))["abortSagas"]
    assert payload["userErrors"] == []
    return {r["sagaId"]: (r["outcome"], r["code"]) for r in payload["results"]}


async def aborted_sagas(database_url: str, ids: list[str]) -> set[str]:
    """The sagas whose journal records an abort."""
    return {
        saga_id
        for saga_id in ids
        if any(isinstance(e, SagaAborted) for e in await journal_of(database_url, saga_id))
    }


async def test_a_bulk_abort_killed_midway_leaves_each_saga_aborted_or_untouched(database_url: str) -> None:
    count = MAX_BULK_SAGAS
    async with ordersaga_serve(database_url, *FAST_RETRIES) as server:
        await stock(server.gql, quantity=count)
        await stage(server.gql, "SHIPMENT", failureRate=1.0)
        placed = [await place(server.gql, 1) for _ in range(count)]
        acknowledged = {p["saga"]["id"]: p["order"]["id"] for p in placed}
        ids = list(acknowledged)

        await until_statuses(
            database_url, lambda now: list(now.values()) == [PARKED] * count, "every saga parked"
        )

        # Killed once the first aborts are in the read model, while the call goes on.
        engine = make_engine(database_url, writer=False)
        moved = select(func.count()).where(saga_view.c.status != PARKED)
        bulk = asyncio.create_task(abort_all(server.gql, ids))
        try:
            for _ in range(2000):
                async with engine.connect() as conn:
                    if await conn.scalar(moved):
                        break
                await asyncio.sleep(0.002)
        finally:
            await engine.dispose()
        await server.kill()
        assert isinstance((await asyncio.gather(bulk, return_exceptions=True))[0], httpx.TransportError)

    aborted = await aborted_sagas(database_url, ids)
    assert 0 < len(aborted) < count, "the kill did not land in the middle of the call"
    statuses = await saga_statuses(database_url)
    assert all(statuses[saga_id] == PARKED for saga_id in ids if saga_id not in aborted)

    async with ordersaga_serve(database_url, *FAST_RETRIES) as server:
        # None stuck: the restart compensates every aborted saga; the others wait for an operator.
        await until_statuses(
            database_url,
            lambda now: all(now[saga_id] == SagaStatus.FAILED.value for saga_id in aborted),
            "every aborted saga compensated to FAILED",
        )
        statuses = await saga_statuses(database_url)
        assert {statuses[saga_id] for saga_id in ids if saga_id not in aborted} == {PARKED}

        # The same call again: the rest are aborted, the others were already.
        results = await abort_all(server.gql, ids)
        assert results == {
            saga_id: ("ALREADY", "SAGA_FINISHED") if saga_id in aborted else ("DONE", None) for saga_id in ids
        }

        await until_statuses(
            database_url, lambda now: set(now.values()) == {SagaStatus.FAILED.value}, "every saga FAILED"
        )
    # Each saga was aborted exactly once, and its stock came back.
    for saga_id in ids:
        journal = await journal_of(database_url, saga_id)
        assert sum(isinstance(e, SagaAborted) for e in journal) == 1
    await audit(database_url, acknowledged, on_hand=count)
