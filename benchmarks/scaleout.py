"""ordersaga over HTTP on PostgreSQL with several processes: N `serve` processes on ports of their
own (clients spread over them, as a load balancer would), or one `serve --workers N` on one port.

    python -m benchmarks.scaleout --processes 2 [--workers-mode] [--hot] --sagas 600 --concurrency 64
    python -m benchmarks.scaleout --table docs/scaleout.md    # every cell, one markdown table

Each cell runs on a database of its own, created on the server named by ORDERSAGA_BENCH_POSTGRES_URL
(default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) and dropped afterwards. The servers'
CPU (every process of the cell, workers included) and the load generator's own CPU are read from
/proc, so a table shows what the clients cost the machine too. Sagas and stock are checked as in
benchmarks/fullstack.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks import workload
from benchmarks.fullstack import (
    AWAIT_MS,
    PLACE,
    POLL_S,
    STATUS,
    TERMINAL,
    _check_books,
    _free_port,
    post_graphql,
    server_cpu_s,
    stock_catalog,
)
from persistence.database import make_engine

POSTGRES_ENV = "ORDERSAGA_BENCH_POSTGRES_URL"
CONTENTION = "{ inventoryContention { stockReservations stockConflicts stockConflictsExhausted } }"
# (processes, workers mode): one process, two processes on two ports, one serve --workers 2.
LAYOUTS = ((1, False), (2, False), (2, True))


def _cpu_of_group(pids: list[int]) -> float:
    """CPU seconds of these processes and of their descendants (the workers of `serve --workers`),
    each counted once: `server_cpu_s` already counts a process's whole tree."""
    return sum(server_cpu_s(pid) for pid in pids)


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database on the server of `admin_url` (not even migrated),
    dropped when the block is left."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def execute(statement: str) -> None:
        engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    await execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fleet(
    database_url: str, processes: int, workers: bool, workdir: Path
) -> AsyncIterator[tuple[list[str], list[int]]]:
    """The GraphQL URLs of the cell's servers, once all are healthy, and their process ids."""
    ports = [_free_port() for _ in range(1 if workers else processes)]
    options = [f"--workers={processes}"] if workers else []
    servers = []
    for n, port in enumerate(ports):
        command = [
            sys.executable, "-c", "from api.cli import main; main()", "serve", "--port", str(port),
            "--database-url", database_url, *options,
        ]  # fmt: skip
        log = (workdir / f"server-{n}.log").open("wb")
        servers.append(
            await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=log, start_new_session=True
            )
        )
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with aiohttp.ClientSession() as session:
            for url in urls:
                for _ in range(600):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{url}/healthz") as health:
                            if health.status == 200:
                                break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError(f"a server did not become healthy; see {workdir}")
        yield [f"{url}/graphql" for url in urls], [s.pid for s in servers]
    finally:
        for server in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            await server.wait()


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(processes: int, workers: bool, hot: bool, concurrency: int, sagas: int) -> dict[str, Any]:
    orders = workload.orders(sagas, hot, failure_rate=0.0)
    admin = os.environ.get(POSTGRES_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    async with contextlib.AsyncExitStack() as cell:
        workdir = Path(cell.enter_context(tempfile.TemporaryDirectory(prefix="ordersaga-scaleout-")))
        url = await cell.enter_async_context(scratch_database(admin, "ordersaga_bench"))
        urls, pids = await cell.enter_async_context(fleet(url, processes, workers, workdir))
        connector = aiohttp.TCPConnector(limit=concurrency)
        session = await cell.enter_async_context(aiohttp.ClientSession(connector=connector))
        await stock_catalog(session, urls[0], workload.skus(hot), workload.stock_per_sku(sagas))
        gate = asyncio.Semaphore(concurrency)
        finishing: list[float] = []
        placing: list[float] = []
        outcomes: list[tuple[workload.Order, str]] = []

        async def one(n: int, order: workload.Order) -> None:
            async with gate:  # round robin over the servers, as a load balancer would
                place_s, finish_s, status = await _saga(session, urls[n % len(urls)], n, order)
            placing.append(place_s)
            finishing.append(finish_s)
            outcomes.append((order, status))

        cpu0, own0, t0 = _cpu_of_group(pids), _own_cpu_s(), time.perf_counter()
        await asyncio.gather(*(one(n, o) for n, o in enumerate(orders)))
        elapsed = time.perf_counter() - t0
        cpu, own = _cpu_of_group(pids) - cpu0, _own_cpu_s() - own0
        checks = await _check_books(session, urls[0], outcomes, hot)
        conflicts = 0
        if not workers:  # each process counts its own; with workers, one answers at random
            for target in urls:
                counts = (await post_graphql(session, target, CONTENTION))["inventoryContention"]
                conflicts += counts["stockConflicts"]
    placing.sort()
    finishing.sort()
    return {
        "layout": f"serve --workers {processes}" if workers else f"{processes} x serve",
        "processes": processes,
        "distribution": "hot" if hot else "uniform",
        "concurrency": concurrency,
        "sagas": sagas,
        "sagas_per_s": round(sagas / elapsed, 1),
        "p50_ms": round(workload.percentile(finishing, 50) * 1000, 1),
        "p99_ms": round(workload.percentile(finishing, 99) * 1000, 1),
        "place_order_p99_ms": round(workload.percentile(placing, 99) * 1000, 1),
        "server_cpu_s_per_saga": round(cpu / sagas, 5),
        "loadgen_cpu_s_per_saga": round(own / sagas, 5),
        "stock_conflicts": conflicts if not workers else None,
        **checks,
    }


async def _saga(
    session: aiohttp.ClientSession, url: str, n: int, order: workload.Order
) -> tuple[float, float, str]:
    """Place one order and follow its saga to the end: seconds to placeOrder's answer, seconds to
    the end, and how it ended."""
    started = time.perf_counter()
    line = {"sku": order.sku, "quantity": order.quantity}
    order_input = {"customerId": f"bench-{n}", "lines": [line], "awaitOutcomeMs": AWAIT_MS}
    saga = (await post_graphql(session, url, PLACE, input=order_input))["placeOrder"]["saga"]
    placed = time.perf_counter() - started
    status = saga["status"]
    while status not in TERMINAL:
        await asyncio.sleep(POLL_S)
        status = (await post_graphql(session, url, STATUS, id=saga["id"]))["saga"]["status"]
    return placed, time.perf_counter() - started, status


def render(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| layout | SKUs | sagas/s | vs 1 process | p50 ms | p99 ms | placeOrder p99 ms "
        "| server CPU ms/saga | load generator CPU ms/saga | stock conflicts | books |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    single = {c["distribution"]: c["sagas_per_s"] for c in cells if c["processes"] == 1}
    for c in cells:
        ratio = c["sagas_per_s"] / single[c["distribution"]] if c["distribution"] in single else float("nan")
        conflicts = "n/a" if c["stock_conflicts"] is None else c["stock_conflicts"]
        lines.append(
            f"| {c['layout']} | {c['distribution']} | {c['sagas_per_s']} | {ratio:.2f}x | {c['p50_ms']} "
            f"| {c['p99_ms']} | {c['place_order_p99_ms']} | {c['server_cpu_s_per_saga'] * 1000:.2f} "
            f"| {c['loadgen_cpu_s_per_saga'] * 1000:.2f} | {conflicts} "
            f"| {'ok' if c['correct'] else 'WRONG'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--workers-mode", action="store_true", help="one serve --workers N, not N serves")
    parser.add_argument("--hot", action="store_true", help="every order on one SKU")
    parser.add_argument("--sagas", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--table", type=Path, help="run every layout on both distributions; write the table")
    args = parser.parse_args()
    if args.table is None:
        report = asyncio.run(run(args.processes, args.workers_mode, args.hot, args.concurrency, args.sagas))
        print(json.dumps(report, indent=2))
        return
    cells = []
    for hot in (False, True):
        for processes, workers in LAYOUTS:
            cell = asyncio.run(run(processes, workers, hot, args.concurrency, args.sagas))
            print(json.dumps(cell), flush=True)
            cells.append(cell)
    args.table.write_text(render(cells))
    print(render(cells))


if __name__ == "__main__":
    main()
