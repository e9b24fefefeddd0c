"""A real `ordersaga serve` process killed with SIGKILL at several points of a bad day, on SQLite and
PostgreSQL, then restarted: every acknowledged order survives, no step takes effect twice, and every
saga goes on from its journal to a finished state.

Faults live in the killed process only, so each restart runs clean unless the test stages new ones.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from domain.model.saga import SagaStatus, Step, StepStarted, StepTimedOut
from tests.api.server import place, stage, stock
from tests.crash.audit import audit, journal_of, saga_statuses
from tests.crash.server_process import ServerProcess, ordersaga_serve

# Generous step timeouts: the steps that time out here are made to, by staged delays.
CALM = ("--reserve-timeout=5", "--confirm-timeout=5", "--shipment-timeout=5", "--compensation-timeout=5")
FAST_RETRIES = ("--retry-backoff=0.1",)
FINISHED = ("COMPLETED", "FAILED")
BURST = 12


def acknowledge(acknowledged: dict[str, str], placed: dict[str, Any]) -> None:
    assert placed["userErrors"] == []
    acknowledged[placed["saga"]["id"]] = placed["order"]["id"]


async def wait_until_all_finished(database_url: str, seconds: float = 45) -> None:
    statuses: dict[str, str] = {}
    for _ in range(int(seconds / 0.2)):
        statuses = await saga_statuses(database_url)
        if all(status in FINISHED for status in statuses.values()):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"sagas still running: {sorted(s for s in statuses.values() if s not in FINISHED)}")


async def place_burst_order(server: ServerProcess, n: int) -> dict[str, Any]:
    """Order n of a burst, from its own customer, under its own idempotency key."""
    return await place(server.gql, 2, idempotencyKey=f"burst-{n}", customerId=f"burst-{n}")


async def place_while_killing(
    server: ServerProcess, orders: int, answered_before_kill: int
) -> dict[int, Any]:
    """Send `orders` burst orders at once and kill the server once some have been answered, so the kill
    lands among requests, steps and commits in flight. Answers the placeOrder payloads that came back,
    by burst number; the other requests were cut off."""
    requests = [asyncio.create_task(place_burst_order(server, n)) for n in range(orders)]
    pending = set(requests)
    while len(requests) - len(pending) < answered_before_kill:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await server.kill()
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        assert isinstance(result, dict | httpx.TransportError), result
    return {n: r for n, r in enumerate(results) if isinstance(r, dict)}


async def test_sigkill_at_any_point_loses_no_order_and_applies_no_step_twice(database_url: str) -> None:
    acknowledged: dict[str, str] = {}

    # Killed during a slow step: the shipment participant hangs, and the first saga is waiting for it.
    async with ordersaga_serve(database_url, *CALM, *FAST_RETRIES) as server:
        await stock(server.gql, quantity=60)
        await stage(server.gql, "SHIPMENT", delayMs=60_000)
        for _ in range(6):
            acknowledge(acknowledged, await place(server.gql, 1))
        await server.gql.wait_for_saga(next(iter(acknowledged)), "SHIPMENT_CREATING")
        await server.kill()
    assert "SHIPMENT_CREATING" in (await saga_statuses(database_url)).values()

    # Killed between steps under load: the restart resumes those sagas while a burst of orders comes
    # in, and dies once half of the burst has been answered.
    async with ordersaga_serve(database_url, *CALM, *FAST_RETRIES) as server:
        answered = await place_while_killing(server, orders=BURST, answered_before_kill=BURST // 2)
    for placed in answered.values():
        acknowledge(acknowledged, placed)

    # Killed during compensations: ORDERS hangs, so confirmations time out (after 1 s) and shortages
    # are rejected; stock is released, and the orders' cancellations hang, time out and are retried.
    async with ordersaga_serve(database_url, *CALM, "--confirm-timeout=1", *FAST_RETRIES) as server:
        await stage(server.gql, "ORDERS", delayMs=60_000)
        for quantity in (1, 1, 100, 1, 100):
            acknowledge(acknowledged, await place(server.gql, quantity))
        short = list(acknowledged)[-1]
        await server.gql.wait_for_saga(short, "COMPENSATING")
        await server.kill()
    assert "COMPENSATING" in (await saga_statuses(database_url)).values()

    # A clean restart finishes every saga from its journal, while the burst's clients send their
    # orders again under the same keys: an answered one gets its order back, a cut-off one gets the
    # order its request committed, or a new one if it did not.
    async with ordersaga_serve(database_url, *CALM, *FAST_RETRIES) as server:
        for n in range(BURST):
            again = await place_burst_order(server, n)
            if n in answered:
                assert again["saga"]["id"] == answered[n]["saga"]["id"]
            acknowledge(acknowledged, again)
        await wait_until_all_finished(database_url)
    states = await audit(database_url, acknowledged, on_hand=60)
    assert {s.status for s in states.values()} == {SagaStatus.COMPLETED, SagaStatus.FAILED}
    burst_customers = sorted(s.customer_id for s in states.values() if s.customer_id.startswith("burst-"))
    assert burst_customers == sorted(f"burst-{n}" for n in range(BURST))


async def test_a_deadline_that_fell_due_while_down_fires_after_the_restart(database_url: str) -> None:
    acknowledged: dict[str, str] = {}
    async with ordersaga_serve(database_url, "--reserve-timeout=3", *FAST_RETRIES) as server:
        await stock(server.gql, quantity=10)
        await stage(server.gql, "INVENTORY", delayMs=60_000)
        for n in range(3):
            acknowledge(acknowledged, await place(server.gql, 1, idempotencyKey=f"key-{n}"))
        await server.kill()

    # The kill came before the deadlines: each journal ends with its reservation in flight.
    deadlines = [(await journal_of(database_url, saga_id))[-1] for saga_id in acknowledged]
    assert all(isinstance(e, StepStarted) and e.step is Step.RESERVE_STOCK for e in deadlines)
    due = max(e.deadline for e in deadlines if isinstance(e, StepStarted))
    await asyncio.sleep((due - datetime.now(UTC)).total_seconds() + 0.1)
    restarted_at = datetime.now(UTC)

    # Restarted with the default 10 s reserve timeout: the stored 3 s deadlines are the ones that count.
    async with ordersaga_serve(database_url, *FAST_RETRIES) as server:
        for saga_id in acknowledged:
            saga = await server.gql.wait_for_saga(saga_id, "FAILED")
            assert saga["failureReason"] == "RESERVE_STOCK timed out after 3s"
            assert [s["name"] for s in saga["steps"]] == ["CREATE_ORDER", "RESERVE_STOCK", "CANCEL_ORDER"]

        # The same key, also sent several times at once after the restart, answers the first order.
        first_order = acknowledged[next(iter(acknowledged))]
        replays = await asyncio.gather(*(place(server.gql, 1, idempotencyKey="key-0") for _ in range(4)))
        assert {r["order"]["id"] for r in replays} == {first_order}
        reused = await place(server.gql, 2, idempotencyKey="key-0")
        assert [e["code"] for e in reused["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]

    for saga_id in acknowledged:
        timed_out = [e for e in await journal_of(database_url, saga_id) if isinstance(e, StepTimedOut)]
        assert [e.at >= restarted_at for e in timed_out] == [True]
    await audit(database_url, acknowledged, on_hand=10)
