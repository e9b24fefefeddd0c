"""ordersaga over HTTP: a served instance (uvicorn, GraphQL), clients placing orders until each saga
is COMPLETED or FAILED; and, on the same server, the trivial-query ceiling of the GraphQL stack.

    python -m benchmarks.fullstack --concurrency 64 --sagas 1000 [--hot] [--failure-rate 0.05] [--json F]
                                   [--postgres postgresql://user@host/db] [--webhook] [--remote-warehouse]

With --webhook, one webhook endpoint subscribed to every event receives the journal on a receiver in
a process of its own (benchmarks/webhook_receiver.py) while the orders run; the cell then says when
the receiver had every event of every saga, counted from the moment the last saga finished (how far
delivery fell behind).

With --remote-warehouse, the warehouse is a remote service (benchmarks/warehouse.py, in a process of
its own on loopback) that answers every shipment command at once, instead of the built-in one; the
cell then gives the server's figures for those commands (`sagaMetrics.warehouseCommands`).

The server runs in a process of its own (its CPU time is read from /proc); the clients use aiohttp
with keep-alive connections, lean enough not to be what is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import workload
from benchmarks.ceilings import run_load
from benchmarks.databases import Database, fresh_database
from benchmarks.warehouse import remote_warehouse

PLACE = """mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { saga { id status } userErrors { code message } } }"""
STATUS = "query ($id: ID!) { saga(id: $id) { status } }"
TERMINAL = {"COMPLETED", "FAILED"}
POLL_S = 0.002
AWAIT_MS = 30_000
SUBSCRIBE = """mutation ($hook: String!) {
  createWebhookEndpoint(input: {url: $hook}) { endpoint { id } userErrors { code message } } }"""
EVENTS = "query ($id: ID!) { saga(id: $id) { events { sequence } } }"
CATCH_UP_S = 120


class Receiver:
    """The webhook receiver (benchmarks/webhook_receiver.py), served in a process of its own."""

    def __init__(self) -> None:
        self.url = ""
        self.pid = 0

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        port = _free_port()
        command = [sys.executable, "-m", "benchmarks.webhook_receiver", "--port", str(port)]
        process = await asyncio.create_subprocess_exec(*command)
        self.url, self.pid = f"http://127.0.0.1:{port}", process.pid
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(300):
                    with contextlib.suppress(aiohttp.ClientError):
                        await self._arrived(session)
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError("the webhook receiver did not start")
            yield f"{self.url}/hook"
        finally:
            process.kill()
            await process.wait()

    async def _arrived(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.url}/arrived") as response:
            return await response.json()  # type: ignore[no-any-return]

    async def caught_up(
        self, session: aiohttp.ClientSession, url: str, saga_ids: list[str], end: float
    ) -> dict[str, Any]:
        """Wait until every event of `saga_ids` arrived; how many, and how long after `end` (on
        time.monotonic's clock) the last did."""
        expected = set()
        for saga_id in saga_ids:
            events = (await post_graphql(session, url, EVENTS, id=saga_id))["saga"]["events"]
            expected |= {f"evt_{saga_id}_{event['sequence']}" for event in events}
        for _ in range(CATCH_UP_S * 10):
            seen = await self._arrived(session)
            if expected <= seen["arrived"].keys():
                break
            await asyncio.sleep(0.1)
        arrived = seen["arrived"]
        missing = expected - arrived.keys()
        last = max((arrived[i] for i in expected - missing), default=end)
        return {
            "webhook_events": len(expected),
            "webhook_requests": seen["requests"],
            "webhook_missing": len(missing),
            "webhook_caught_up_s": round(max(0.0, last - end), 2),
        }


# A generator of its own, seeded from the system: the caller's process may have seeded the module's
# (a test process that runs a cell), and two processes drawing the same sequence would meet.
_PORTS = random.Random()


def _free_port() -> int:
    """A loopback port free when asked, for a process started next to bind. Drawn at random from
    10000-19999, below the kernel's ephemeral range: a port found by binding port 0 could be taken by
    any outgoing connection or port-0 bind on the machine (a test suite's, when the suite runs a
    cell) before the process bound it, and the cell would then talk to whatever holds it."""
    for _ in range(1_000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", _PORTS.randrange(10_000, 20_000)))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free loopback port found in 10000-19999")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's memory figure from /proc/PID/status, in MiB (Linux): `VmRSS`, its resident set
    now, or `VmHWM`, that set's peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux)."""
    return sum(server_cpu_split_s(pid))


def server_cpu_split_s(pid: int) -> tuple[float, float]:
    """User and system (the kernel's work for it: syscalls, and on loopback the receiving end's TCP
    processing too) CPU seconds so far of a process and of the processes it started that still run
    (a server's webhook sending process), all of which is the server's CPU (Linux)."""
    user = system = 0.0
    for fields in _tree_stats(pid):
        user, system = user + _seconds(fields[11]), system + _seconds(fields[12])
    return user, system


def own_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process alone so far, without those it started (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return _seconds(fields[11]) + _seconds(fields[12])


def _seconds(ticks: str) -> float:
    return int(ticks) / os.sysconf("SC_CLK_TCK")


def _tree_stats(pid: int) -> list[list[str]]:
    """The /proc stat fields (after the command's name) of `pid` and its descendants."""
    stats = _all_stats()
    tree, found = [], [pid]
    while found:
        parent = found.pop()
        tree.append(stats[parent])
        found.extend(children(parent, stats))
    return tree


def children(pid: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """The processes whose parent is `pid`, among `stats` (every process's, read now, by default)."""
    return [child for child, fields in (stats or _all_stats()).items() if int(fields[1]) == pid]


def _all_stats() -> dict[int, list[str]]:
    """Every process's /proc stat fields, after the command's name, by process id (Linux)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    return stats


@contextlib.asynccontextmanager
async def served(
    workdir: Path, database: Database, options: Sequence[str] = ()
) -> AsyncIterator[tuple[str, int]]:
    """`ordersaga serve` on `database` with `options` added, until the block ends; its GraphQL URL and
    process id."""
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        "from api.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--database-url",
        database.async_url,
        *options,
    ]
    # The server's log goes to a file: a pipe nobody drains would stall it once full.
    log = (workdir / "server.log").open("wb")
    server = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/healthz") as health:
                        if health.status == 200:
                            break
                if server.returncode is not None:
                    raise RuntimeError(f"the server exited: {(workdir / 'server.log').read_text()}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the server did not become healthy")
        yield f"{url}/graphql", server.pid
    finally:
        server.kill()
        await server.wait()
        log.close()


async def post_graphql(
    session: aiohttp.ClientSession, url: str, query: str, **variables: Any
) -> dict[str, Any]:
    async with session.post(url, json={"query": query, "variables": variables}) as response:
        body = await response.json()
    if "errors" in body:
        raise RuntimeError(body["errors"])
    return body["data"]  # type: ignore[no-any-return]


async def stock_catalog(session: aiohttp.ClientSession, url: str, skus: list[str], quantity: int) -> None:
    await post_graphql(
        session,
        url,
        """mutation { registerWarehouse(input: {code: "W1", name: "Bench",
        sections: [{code: "A", storageCondition: AMBIENT}]}) { userErrors { code } } }""",
    )
    for sku in [*skus, workload.EMPTY_SKU]:
        await post_graphql(
            session,
            url,
            "mutation ($i: RegisterProductInput!) { registerProduct(input: $i) { userErrors { code } } }",
            i={"sku": sku, "name": sku, "storageCondition": "AMBIENT"},
        )
    for sku in skus:
        await post_graphql(
            session,
            url,
            "mutation ($i: ReceiveStockInput!) { receiveStock(input: $i) { userErrors { code } } }",
            i={"sku": sku, "warehouseCode": "W1", "sectionCode": "A", "quantity": quantity},
        )


async def run(
    concurrency: int,
    sagas: int,
    hot: bool,
    failure_rate: float,
    workdir: Path,
    database: Database,
    ceiling_s: float = 5.0,
    webhook: bool = False,
    warehouse: bool = False,
    warmup: int = 0,
) -> dict[str, Any]:
    """One cell: `warmup` sagas untimed, then `sagas` timed. Throughput, latencies, CPU and requests
    are the timed sagas'; `warmup_max_ms` is the slowest warm-up saga (the cold start); the checks
    (outcomes and stock, webhook deliveries, the warehouse's commands) cover every saga."""
    load_before = os.getloadavg()[0]
    orders = workload.orders(warmup + sagas, hot, failure_rate)
    receiver = Receiver()
    remote: contextlib.AbstractAsyncContextManager[list[str]] = (
        remote_warehouse(workdir, _free_port()) if warehouse else contextlib.nullcontext([])
    )
    hooked = receiver.serving() if webhook else contextlib.nullcontext("")
    async with remote as options, served(workdir, database, options) as (url, pid), hooked as hook:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            if webhook:
                # Before the catalog, as an endpoint is there before the orders it follows: the
                # server starts what sends its requests meanwhile, not while the orders are timed.
                subscribed = await post_graphql(session, url, SUBSCRIBE, hook=hook)
                assert subscribed["createWebhookEndpoint"]["userErrors"] == [], subscribed
            await stock_catalog(session, url, workload.skus(hot), workload.stock_per_sku(len(orders)))
            gate = asyncio.Semaphore(concurrency)
            placing, finishing, outcomes, requests, saga_ids = [], [], [], 0, []

            async def one(n: int, order: workload.Order) -> None:
                nonlocal requests
                async with gate:
                    started = time.perf_counter()
                    line = {"sku": order.sku, "quantity": order.quantity}
                    # One request a saga: placeOrder answers once its saga has finished (polling takes
                    # over only if it has not within the wait).
                    order_input = {"customerId": f"bench-{n}", "lines": [line], "awaitOutcomeMs": AWAIT_MS}
                    placed = await post_graphql(session, url, PLACE, input=order_input)
                    placing.append(time.perf_counter() - started)
                    saga = placed["placeOrder"]["saga"]
                    saga_ids.append(saga["id"])
                    status, requests = saga["status"], requests + 1
                    while status not in TERMINAL:
                        await asyncio.sleep(POLL_S)
                        status = (await post_graphql(session, url, STATUS, id=saga["id"]))["saga"]["status"]
                        requests += 1
                    finishing.append(time.perf_counter() - started)
                    outcomes.append((order, status))

            await asyncio.gather(*(one(n, o) for n, o in enumerate(orders[:warmup])))
            warmed = max(finishing, default=0.0)
            placing.clear()
            finishing.clear()
            requests = 0
            (user0, system0), t0 = server_cpu_split_s(pid), time.perf_counter()
            sagas_process0 = own_cpu_s(pid)
            receiving0 = server_cpu_s(receiver.pid) if webhook else 0.0
            await asyncio.gather(*(one(n, o) for n, o in enumerate(orders[warmup:], start=warmup)))
            end, ended = time.perf_counter(), time.monotonic()
            user1, system1 = server_cpu_split_s(pid)
            sagas_process = own_cpu_s(pid) - sagas_process0
            user, system = user1 - user0, system1 - system0
            elapsed, cpu = end - t0, user + system
            # The receiver's share of the same cores, while the sagas ran.
            receiving = server_cpu_s(receiver.pid) - receiving0 if webhook else 0.0
            checks = await _check_books(session, url, outcomes, hot)
            delivered = await receiver.caught_up(session, url, saga_ids, ended) if webhook else {}
            commands = await _warehouse_commands(session, url) if warehouse else {}
        ceiling = await run_load(url, lambda _: {"query": "{ __typename }"}, concurrency, ceiling_s)
    placing.sort()
    finishing.sort()
    return {
        "mode": "full",
        "database": database.kind,
        "concurrency": concurrency,
        "sagas": sagas,
        "warmup": warmup,
        "distribution": "hot" if hot else "uniform",
        "failure_rate": failure_rate,
        "loadavg_1m_before": round(load_before, 2),
        "warmup_max_ms": round(warmed * 1000, 2),
        "sagas_per_s": round(sagas / elapsed, 1),
        "p50_ms": round(workload.percentile(finishing, 50) * 1000, 2),
        "p99_ms": round(workload.percentile(finishing, 99) * 1000, 2),
        "place_order_p50_ms": round(workload.percentile(placing, 50) * 1000, 2),
        "place_order_p99_ms": round(workload.percentile(placing, 99) * 1000, 2),
        "requests_per_saga": round(requests / sagas, 2),
        "server_cpu_s_per_saga": round(cpu / sagas, 5),
        # The served process alone (its event loop and the sagas' writer), without the webhook
        # sending process it starts: the part of the server's CPU on the sagas' path.
        "sagas_process_cpu_s_per_saga": round(sagas_process / sagas, 5),
        "server_system_cpu_share": round(system / cpu, 2) if cpu else 0.0,
        "trivial_query_per_s": ceiling["requests_per_s"],
        **checks,
        **delivered,
        **({"receiver_cpu_s_per_saga": round(receiving / sagas, 5)} if webhook else {}),
        **commands,
        "warehouse": "remote" if warehouse else "built-in",
        "correct": checks["correct"] and delivered.get("webhook_missing", 0) == 0,
    }


async def _check_books(
    session: aiohttp.ClientSession, url: str, outcomes: list[tuple[workload.Order, str]], hot: bool
) -> dict[str, Any]:
    stock = {}
    for sku in workload.skus(hot):
        query = "query ($s: String!) { stockLevels(sku: $s) { onHand reserved } }"
        levels = (await post_graphql(session, url, query, s=sku))["stockLevels"]
        stock[sku] = (sum(x["onHand"] for x in levels), sum(x["reserved"] for x in levels))
    return workload.books(outcomes, stock)


async def _warehouse_commands(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """How the server saw its CreateShipment commands: how many, and their latency."""
    query = "{ sagaMetrics { warehouseCommands { type sent latencyMsAverage latencyMsMax } } }"
    listed = (await post_graphql(session, url, query))["sagaMetrics"]["warehouseCommands"]
    (created,) = (c for c in listed if c["type"] == "CreateShipment")
    return {
        "warehouse_commands": created["sent"],
        "warehouse_command_ms_average": round(created["latencyMsAverage"], 2),
        "warehouse_command_ms_max": round(created["latencyMsMax"], 2),
    }


def main() -> None:
    parser = workload.cell_arguments(__doc__, sagas=1000, warms_up=True)
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--webhook", action="store_true", help="with one webhook endpoint taking every event")
    parser.add_argument(
        "--remote-warehouse", action="store_true", help="with a remote warehouse service answering at once"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="ordersaga-bench-") as workdir,
        fresh_database(args.postgres, Path(workdir), "full") as database,
    ):
        cell = (args.concurrency, args.sagas, args.hot, args.failure_rate, Path(workdir), database)
        report = asyncio.run(
            run(
                *cell,
                ceiling_s=args.ceiling_seconds,
                webhook=args.webhook,
                warehouse=args.remote_warehouse,
                warmup=workload.warmup(args.concurrency, args.warmup),
            )
        )
    workload.emit(report, args.json)


if __name__ == "__main__":
    main()
