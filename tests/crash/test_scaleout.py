"""Several real `ordersaga serve` processes over one PostgreSQL database: started together on a new
database, one killed with SIGKILL while its sagas are mid-step (the others take them over once the
leases expire and finish them, timers included), a subscription on one process following sagas
driven by another, one idempotency key sent to two processes at once, a storm of orders spread over
processes. Leases last 1.5 s here, so takeovers come within seconds; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from api.staged_faults import REFRESH_S
from benchmarks import hotsku, scaleout
from benchmarks.scaleout import scratch_database
from domain.model.saga import StepTimedOut
from persistence.database import make_engine
from persistence.migrate import alembic_config
from persistence.tables import orders
from tests.api.server import PLACE, TLS, GraphQLClient, place, stage, stock
from tests.api.subscriptions import subscriptions
from tests.conftest import POSTGRES_ENV
from tests.crash.audit import audit, journal_of, saga_statuses
from tests.crash.server_process import ORDERSAGA, ServerProcess, ordersaga_serve
from tests.crash.test_sigkill import FAST_RETRIES, acknowledge, wait_until_all_finished

postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

LEASE_TTL = 1.5
LEASED = (f"--lease-ttl={LEASE_TTL}", *FAST_RETRIES)
# Time for the survivors, after the lease time, to notice (a lease round every third of it) and to
# run the sagas they took over on a shared two-core machine.
TAKEOVER_SLACK_S = 10
SAGA_LEASE = "query ($id: ID!) { saga(id: $id) { status lease { owner expiresAt } } }"
FEED = "subscription { sagaFeed { sequence status saga { id } } }"
DEMO_ORDER = """mutation {
  placeOrder(input: {customerId: "c", lines: [{sku: "TEA-GREEN", quantity: 1}]}) {
    saga { id } userErrors { code }
  }
}"""
UPDATES = "subscription ($id: ID!) { sagaUpdates(sagaId: $id) { sequence status } }"


@contextlib.asynccontextmanager
async def fleet(database_url: str, size: int, *options: str) -> AsyncIterator[list[ServerProcess]]:
    """`size` processes over one database, started at the same moment."""
    async with contextlib.AsyncExitStack() as stack:
        servers = await asyncio.gather(
            *(stack.enter_async_context(ordersaga_serve(database_url, *options)) for _ in range(size))
        )
        yield list(servers)


def instance_of(server: ServerProcess) -> str:
    return f"{socket.gethostname()}:{server.process.pid}"


@pytest.fixture
async def new_database(postgres_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database with nothing in it, not even migrations."""
    async with scratch_database(os.environ[POSTGRES_ENV], "ordersaga_new") as url:
        yield url


async def test_processes_started_together_on_a_new_database_migrate_it_once_and_all_serve(
    new_database: str,
) -> None:
    async with fleet(new_database, 3, "--demo", *LEASED) as servers:
        placed = await asyncio.gather(*(s.gql(DEMO_ORDER) for s in servers))
        for answer, server in zip(placed, servers, strict=True):
            assert answer["placeOrder"]["userErrors"] == []
            await server.gql.wait_for_saga(answer["placeOrder"]["saga"]["id"], "COMPLETED")
    assert not any("Traceback" in line for s in servers for line in s.output), servers[0].output
    engine = make_engine(new_database, writer=False)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert versions == [ScriptDirectory.from_config(alembic_config()).get_current_head()]


@postgresql_only
async def test_sagas_of_a_killed_process_are_taken_over_and_finished_within_the_lease_time(
    database_url: str,
) -> None:
    acknowledged: dict[str, str] = {}
    async with fleet(database_url, 3, "--shipment-timeout=20", *LEASED) as (doomed, *survivors):
        await stock(doomed.gql, quantity=60)
        await stage(doomed.gql, "SHIPMENT", delayMs=60_000)
        for _ in range(6):
            acknowledge(acknowledged, await place(doomed.gql, 1))
        hanging = list(acknowledged)
        for saga_id in hanging:
            await doomed.gql.wait_for_saga(saga_id, "SHIPMENT_CREATING")
            # Operators see which process drives the saga, and until when its lease runs.
            lease = (await survivors[0].gql(SAGA_LEASE, id=saga_id))["saga"]["lease"]
            assert lease["owner"] == instance_of(doomed) and lease["expiresAt"] is not None

        await doomed.kill()
        killed_at = time.monotonic()
        # Staged faults hold for every process: the survivors run healthy once they are cleared.
        cleared = await survivors[0].gql("mutation { clearParticipantFaults { userErrors { code } } }")
        assert cleared["clearParticipantFaults"]["userErrors"] == []
        await asyncio.sleep(2 * REFRESH_S)  # the other survivor has read that too
        for survivor in survivors:  # the survivors place orders of their own meanwhile
            acknowledge(acknowledged, await place(survivor.gql, 1))
        await wait_until_all_finished(database_url, seconds=LEASE_TTL + TAKEOVER_SLACK_S)
        assert time.monotonic() - killed_at < LEASE_TTL + TAKEOVER_SLACK_S

        leases = [(await survivors[0].gql(SAGA_LEASE, id=s))["saga"]["lease"] for s in hanging]
        assert leases == [None] * len(hanging), "a finished saga keeps no lease"
    states = await audit(database_url, acknowledged, on_hand=60)
    assert {states[s].status.value for s in acknowledged} == {"COMPLETED"}
    assert any("took over" in line for s in survivors for line in s.output)


@postgresql_only
async def test_a_deadline_fires_once_on_the_process_that_took_its_saga_over(database_url: str) -> None:
    acknowledged: dict[str, str] = {}
    async with fleet(database_url, 2, "--reserve-timeout=4", *LEASED) as (doomed, survivor):
        await stock(doomed.gql, quantity=10)
        for server in (doomed, survivor):  # the stock never answers in time, wherever the saga runs
            await stage(server.gql, "INVENTORY", delayMs=60_000)
        for n in range(3):
            acknowledge(acknowledged, await place(doomed.gql, 1, idempotencyKey=f"slow-{n}"))
        await doomed.kill()
        killed_at = datetime.now(UTC)
        await wait_until_all_finished(database_url, seconds=4 + LEASE_TTL + TAKEOVER_SLACK_S)
        for saga_id in acknowledged:
            saga = await survivor.gql.wait_for_saga(saga_id, "FAILED")
            assert saga["failureReason"] == "RESERVE_STOCK timed out after 4s"
    for saga_id in acknowledged:
        timed_out = [e for e in await journal_of(database_url, saga_id) if isinstance(e, StepTimedOut)]
        assert [e.at > killed_at for e in timed_out] == [True]
    await audit(database_url, acknowledged, on_hand=10)


@postgresql_only
async def test_a_subscription_on_one_process_follows_every_transition_of_sagas_driven_by_another(
    database_url: str,
) -> None:
    async with fleet(database_url, 2, *LEASED) as (driver, follower):
        await stock(driver.gql, quantity=3)
        base_url = str(follower.gql.http.base_url).rstrip("/")
        async with subscriptions(base_url) as client:
            await client.subscribe("feed", FEED)
            await asyncio.sleep(0.3)  # the subscription registers before anything is placed
            placed = [await place(driver.gql, 1) for _ in range(5)]  # three complete, two fall short
            ids = {p["saga"]["id"] for p in placed}
            seen: dict[str, list[int]] = defaultdict(list)
            finished: set[str] = set()
            while finished != ids:
                update = (await client.next("feed", seconds=20))["data"]["sagaFeed"]  # type: ignore[index]
                saga_id = update["saga"]["id"]
                seen[saga_id].append(update["sequence"])
                if update["status"] in ("COMPLETED", "FAILED"):
                    finished.add(saga_id)

            # One saga driven there, followed here on its own from its current state to its end.
            await stage(driver.gql, "SHIPMENT", delayMs=1000)
            slow = (await place(driver.gql, 1, customerId="late"))["saga"]["id"]
            await client.subscribe("one", UPDATES, id=slow)
            updates = [p["data"]["sagaUpdates"] for p in await client.until_complete("one")]
    for saga_id in ids:
        journal = await journal_of(database_url, saga_id)
        assert seen[saga_id] == list(range(1, len(journal) + 1)), "every transition, once, in order"
    sequences = [u["sequence"] for u in updates]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert updates[-1]["status"] in ("COMPLETED", "FAILED")
    assert sequences[-1] == len(await journal_of(database_url, slow))


async def place_as_told(gql: GraphQLClient, customer: str, **extra: object) -> dict[str, Any]:
    """placeOrder for one unit (with `extra` input fields), sent again as long as it is answered
    SERVICE_UNAVAILABLE, after the wait it names, as a client is told to: nothing was done, so the
    order is placed once. (Two processes' pools, beside the rest of a test run, can take every
    connection the PostgreSQL server allows.)"""
    order = {"customerId": customer, "lines": [{"sku": "TEA", "quantity": 1}], **extra}
    for _ in range(30):
        body = (await gql.http.post("/graphql", json={"query": PLACE, "variables": {"input": order}})).json()
        if "errors" not in body:
            return body["data"]["placeOrder"]  # type: ignore[no-any-return]
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
        # Jittered, so that those told together do not all come back at once.
        await asyncio.sleep(error["extensions"]["retryAfterSeconds"] * random.uniform(1, 1.5))
    raise AssertionError(f"{customer}'s order was answered SERVICE_UNAVAILABLE 30 times")


@postgresql_only
async def test_one_idempotency_key_sent_to_two_processes_at_once_makes_one_order(database_url: str) -> None:
    async with fleet(database_url, 2, *LEASED) as (first, second):
        # A product registered on one process is orderable on the other at once.
        await stock(first.gql, quantity=20)
        answers = []
        for n in range(5):
            answers.append(
                await asyncio.gather(
                    *(place_as_told(s.gql, f"c-{n}", idempotencyKey=f"twice-{n}") for s in (first, second))
                )
            )
        for pair in answers:
            assert [a["userErrors"] for a in pair] == [[], []]
            assert pair[0]["order"]["id"] == pair[1]["order"]["id"]
        acknowledged = {a["saga"]["id"]: a["order"]["id"] for pair in answers for a in pair}
        await wait_until_all_finished(database_url)
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(orders))).scalar_one() == 5
    finally:
        await engine.dispose()
    await audit(database_url, acknowledged, on_hand=20)


@postgresql_only
async def test_a_replayed_key_awaiting_its_outcome_is_answered_when_the_other_process_settles_it(
    database_url: str,
) -> None:
    async with fleet(database_url, 2, *LEASED) as (driver, other):
        await stock(driver.gql, quantity=5)
        await stage(driver.gql, "SHIPMENT", delayMs=1500)
        placed = await place(driver.gql, 1, idempotencyKey="await-there")
        # The same request sent to the other process, waiting longer than the client will: it is
        # answered when the driving process settles the saga, not when the wait runs out.
        replay = await place(other.gql, 1, idempotencyKey="await-there", awaitOutcomeMs=30_000)
    assert replay["saga"]["id"] == placed["saga"]["id"]
    assert (replay["saga"]["status"], replay["order"]["status"]) == ("COMPLETED", "CONFIRMED")


@postgresql_only
async def test_a_storm_spread_over_processes_sells_the_stock_there_is_and_no_more(database_url: str) -> None:
    orders_sent, on_hand = 90, 30
    async with fleet(database_url, 2, "--reserve-timeout=60", "--confirm-timeout=60", *LEASED) as servers:
        await stock(servers[0].gql, quantity=on_hand)
        answers = await asyncio.gather(
            *(place_as_told(servers[n % 2].gql, f"storm-{n}") for n in range(orders_sent))
        )
        acknowledged: dict[str, str] = {}
        for answer in answers:
            acknowledge(acknowledged, answer)
        await wait_until_all_finished(database_url, seconds=120)
    statuses = Counter((await saga_statuses(database_url)).values())
    assert statuses == {"COMPLETED": on_hand, "FAILED": orders_sent - on_hand}
    await audit(database_url, acknowledged, on_hand=on_hand)


@postgresql_only
async def test_serve_with_workers_runs_that_many_processes_on_one_port(database_url: str) -> None:
    async with ordersaga_serve(database_url, "--workers=2", *LEASED) as server:
        assert len(children_of(server.process.pid)) >= 2  # the workers (and a helper of the supervisor's)
        await stock(server.gql, quantity=5)
        placed = [await place(server.gql, 1) for _ in range(4)]
        for answer in placed:
            await server.gql.wait_for_saga(answer["saga"]["id"], "COMPLETED")
        metrics = (await server.gql.http.get("/metrics")).text
        assert 'instance="' in metrics


@postgresql_only
async def test_serve_with_workers_on_port_0_prints_the_port_its_socket_holds(database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "serve",
        "--port=0",
        "--workers=2",
        f"--database-url={database_url}",
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # its workers are killed with it
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            graphiql = (await process.stdout.readline()).decode().strip()
        found = re.fullmatch(r"GraphiQL: (http://127\.0\.0\.1:(\d+))/graphql \(2 workers\)", graphiql)
        assert found is not None and int(found[2]) != 0, graphiql
        # The workers accept once they have started.
        async with httpx.AsyncClient(timeout=60, verify=TLS) as http:
            assert (await http.get(f"{found[1]}/healthz")).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def children_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


async def refusal(*arguments: str) -> tuple[int, str]:
    """Run `ordersaga serve` expecting it to refuse: its exit status and output."""
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "serve",
        "--port=0",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--workers=2", "--workers needs PostgreSQL"),
        ("--workers=0", "--workers must be at least 1"),
        ("--lease-ttl=0", "--lease-ttl must be more than 0 seconds"),
    ],
)
async def test_serve_refuses_what_it_cannot_do_with_a_clear_message(
    tmp_path: Path, option: str, message: str
) -> None:
    status, output = await refusal(option, f"--database-url=sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    assert status != 0 and message in output
    assert not (tmp_path / "one.db").exists(), "a refused start touches nothing"


async def test_a_second_serve_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    async with ordersaga_serve(url) as first:
        await stock(first.gql, quantity=1)
        status, output = await refusal(f"--database-url={url}")
        assert status != 0 and "already served by another ordersaga process" in output
        assert (await first.gql.http.get("/readyz")).status_code == 200
    # Killed with the context: the lock went with the process, and the file can be served again.
    async with ordersaga_serve(url) as again:
        assert (await again.gql.http.get("/readyz")).status_code == 200


@postgresql_only
async def test_the_scaleout_benchmark_runs_a_cell_and_checks_its_books(database_url: str) -> None:
    cell = await scaleout.run(processes=2, workers=False, hot=True, concurrency=4, sagas=12)
    assert cell["correct"] and cell["completed"] == 12 and cell["layout"] == "2 x serve"
    assert "| 2 x serve | hot |" in scaleout.render([cell])


@postgresql_only
async def test_the_hot_sku_benchmark_runs_a_cell_and_checks_its_books(database_url: str) -> None:
    cell = await hotsku.run(processes=2, sagas=12, concurrency=4, hot_share=0.5, restock_every_s=0.05)
    assert cell["books"] and cell["completed"] == 12 and cell["restocks"] >= 1
    assert 0 <= cell["worst_5s_place_orders"] <= 12
    assert "| 2 | " in hotsku.render([cell]) and "| ok |" in hotsku.render([cell])


def test_the_worst_window_counts_the_fewest_answers_in_any_5_seconds() -> None:
    answered = [0.5, 1.0, 7.0, 8.0, 12.5]
    assert hotsku.worst_window(answered, start=0.0, end=13.0) == 0  # nothing after 1.0 until 7.0
    assert hotsku.worst_window([*answered, 4.0], start=0.0, end=13.0) == 1
    assert hotsku.worst_window([1.0, 2.0], start=0.0, end=4.0) == 2  # shorter than a window: the whole run
