"""What holds for a deployment of several real `ordersaga serve` processes over one PostgreSQL, not
for each process alone: a mutation rate limit counted in a store they share, and the participant
faults staged through any of them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from api.staged_faults import REFRESH_S
from tests.api.server import place, stage, stock
from tests.api.tokens import SECRET, Caller, codes, token
from tests.crash.server_process import ServerProcess
from tests.crash.test_scaleout import LEASED, fleet

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
CLEAR = "mutation { clearParticipantFaults { faults { participant } userErrors { code } } }"
CANCEL = 'mutation { cancelOrder(input: {orderId: "none"}) { userErrors { code } } }'


@postgresql_only
async def test_two_processes_sharing_a_rate_limit_store_admit_the_limit_once_between_them(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    options = ("--auth-secret-file", str(secret), "--mutation-rate-limit", "3/minute")
    shared = ("--rate-limit-storage", redis_url)
    customer = {"Authorization": f"Bearer {token(f'customer-{uuid.uuid4()}', 'customer')}"}
    async with fleet(database_url, 2, *LEASED, *options, *shared) as servers:
        callers = [Caller(server.gql.http, customer) for server in servers]
        answers = [await callers[n % 2](CANCEL) for n in range(5)]
    assert [codes(answer) for answer in answers] == [[], [], [], ["RATE_LIMITED"], ["RATE_LIMITED"]]
    assert all(1 <= a["errors"][0]["extensions"]["retryAfterSeconds"] <= 60 for a in answers[3:])


@postgresql_only
async def test_a_fault_staged_on_one_process_holds_on_the_others_and_counts_its_failures_once(
    database_url: str,
) -> None:
    async with fleet(database_url, 2, *LEASED) as (first, second):
        await stock(first.gql, quantity=10)
        # Staged on one, read and met on the other: the deployment's faults.
        await stage(first.gql, "INVENTORY", failNext=1)
        staged = (await second.gql("{ participantFaults { participant failNext } }"))["participantFaults"]
        assert staged == [{"participant": "INVENTORY", "failNext": 1}]
        await asyncio.sleep(REFRESH_S * 2)  # each process has read it since
        met = await place(second.gql, 1)
        assert await reservation_attempts(second, met["saga"]["id"]) == 2
        # The first process may still hold it as staged, but the failure was counted off for all.
        spared = await place(first.gql, 1)
        assert await reservation_attempts(first, spared["saga"]["id"]) == 1
        assert (await first.gql("{ participantFaults { participant } }"))["participantFaults"] == []

        # Cleared on one, gone on both.
        await stage(second.gql, "ORDERS", failureRate=1.0)
        await asyncio.sleep(REFRESH_S * 2)
        cleared = (await first.gql(CLEAR))["clearParticipantFaults"]
        assert cleared == {"faults": [], "userErrors": []}
        await asyncio.sleep(REFRESH_S * 2)
        healthy = await place(second.gql, 1)
        await second.gql.wait_for_saga(healthy["saga"]["id"], "COMPLETED")


async def reservation_attempts(server: ServerProcess, saga_id: str) -> int:
    saga = await server.gql.wait_for_saga(saga_id, "COMPLETED")
    return next(int(step["attempts"]) for step in saga["steps"] if step["name"] == "RESERVE_STOCK")
