"""One hot SKU under several processes on PostgreSQL: a share of the orders on one SKU, the rest spread
over many, and restocks of the hot SKU alongside; the same load on 1, 2 and 3 `serve` processes.

    python -m benchmarks.hotsku [--processes 1 2 3] [--sagas 1500] [--concurrency 24]
                                [--hot-share 0.3] [--restock-every-ms 50]

What it shows, per cell: sagas/s and its ratio to one process, placeOrder p99 and max, and the worst
5-second window: the fewest placeOrder answers in any 5 s of the run (0 means the service stood
still for 5 s). Each cell runs on a new database (benchmarks/scaleout.py); every saga must end
COMPLETED, and each SKU's on-hand must equal what was received and its reserved what the completed
orders took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import tempfile
import time
from bisect import bisect_right
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import workload
from benchmarks.fullstack import AWAIT_MS, PLACE, POLL_S, STATUS, TERMINAL, post_graphql, stock_catalog
from benchmarks.scaleout import POSTGRES_ENV, fleet, scratch_database

WINDOW_S = 5.0
RESTOCK = """mutation ($i: ReceiveStockInput!) { receiveStock(input: $i) { userErrors { code } } }"""
LEVELS = "{ products { sku onHand reserved } }"


def worst_window(answered_at: list[float], start: float, end: float, width: float = WINDOW_S) -> int:
    """The fewest of `answered_at` (seconds) in any window of `width` seconds within [start, end]
    (all of them if the run is shorter than `width`)."""
    times = sorted(answered_at)
    if end - start <= width:
        return len(times)
    # The count only falls where a window's start passes an answer, so the windows to try begin
    # right after each answer (and at the run's start): (left, left + width].
    lefts = [start, *(t for t in times if t <= end - width)]
    return min(bisect_right(times, left + width) - bisect_right(times, left) for left in lefts)


async def run(
    processes: int, sagas: int, concurrency: int, hot_share: float, restock_every_s: float
) -> dict[str, Any]:
    rng = random.Random(7)
    spread = workload.skus(hot=False)
    orders = [
        workload.Order(
            workload.HOT_SKU if rng.random() < hot_share else rng.choice(spread),
            rng.randint(1, workload.MAX_QUANTITY),
        )
        for _ in range(sagas)
    ]
    initial = workload.stock_per_sku(sagas)
    admin = os.environ.get(POSTGRES_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    async with contextlib.AsyncExitStack() as cell:
        workdir = Path(cell.enter_context(tempfile.TemporaryDirectory(prefix="ordersaga-hotsku-")))
        url = await cell.enter_async_context(scratch_database(admin, "ordersaga_bench"))
        urls, _ = await cell.enter_async_context(fleet(url, processes, False, workdir))
        connector = aiohttp.TCPConnector(limit=concurrency + 1)
        session = await cell.enter_async_context(aiohttp.ClientSession(connector=connector))
        await stock_catalog(session, urls[0], [*spread, workload.HOT_SKU], initial)
        gate = asyncio.Semaphore(concurrency)
        placing: list[float] = []
        answered_at: list[float] = []
        statuses: list[str] = []
        restocked = 0
        running = True

        async def one(n: int, order: workload.Order) -> None:
            async with gate:
                url = urls[n % len(urls)]
                started = time.perf_counter()
                line = {"sku": order.sku, "quantity": order.quantity}
                order_input = {"customerId": f"bench-{n}", "lines": [line], "awaitOutcomeMs": AWAIT_MS}
                saga = (await post_graphql(session, url, PLACE, input=order_input))["placeOrder"]["saga"]
                answered_at.append(time.perf_counter())
                placing.append(answered_at[-1] - started)
                status = saga["status"]
                while status not in TERMINAL:
                    await asyncio.sleep(POLL_S)
                    status = (await post_graphql(session, url, STATUS, id=saga["id"]))["saga"]["status"]
                statuses.append(status)

        async def restock() -> None:
            nonlocal restocked
            n = 0
            while running:
                place = {"sku": workload.HOT_SKU, "warehouseCode": "W1", "sectionCode": "A", "quantity": 1}
                await post_graphql(session, urls[n % len(urls)], RESTOCK, i=place)
                restocked, n = restocked + 1, n + 1
                await asyncio.sleep(restock_every_s)

        restocker = asyncio.create_task(restock())
        t0 = time.perf_counter()
        try:
            await asyncio.gather(*(one(n, o) for n, o in enumerate(orders)))
        finally:
            running = False
            await restocker
        end = time.perf_counter()
        levels = {
            p["sku"]: (p["onHand"], p["reserved"])
            for p in (await post_graphql(session, urls[0], LEVELS))["products"]
        }
    wanted: dict[str, int] = {}
    for order in orders:
        wanted[order.sku] = wanted.get(order.sku, 0) + order.quantity
    expected = {
        sku: (initial + (restocked if sku == workload.HOT_SKU else 0), wanted.get(sku, 0))
        for sku in [*spread, workload.HOT_SKU]
    }
    placing.sort()
    return {
        "processes": processes,
        "sagas": sagas,
        "concurrency": concurrency,
        "hot_share": hot_share,
        "restocks": restocked,
        "sagas_per_s": round(sagas / (end - t0), 1),
        "place_order_p99_ms": round(workload.percentile(placing, 99) * 1000, 1),
        "place_order_max_ms": round(placing[-1] * 1000, 1),
        "worst_5s_place_orders": worst_window(answered_at, t0, end),
        "completed": statuses.count("COMPLETED"),
        "books": all(levels.get(sku) == level for sku, level in expected.items()),
    }


def render(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| processes | sagas/s | vs 1 process | placeOrder p99 ms | placeOrder max ms "
        "| worst 5 s: placeOrders answered | restocks | books |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    single = next((c["sagas_per_s"] for c in cells if c["processes"] == 1), float("nan"))
    for c in cells:
        lines.append(
            f"| {c['processes']} | {c['sagas_per_s']} | {c['sagas_per_s'] / single:.2f}x "
            f"| {c['place_order_p99_ms']} | {c['place_order_max_ms']} | {c['worst_5s_place_orders']} "
            f"| {c['restocks']} | {'ok' if c['books'] and c['completed'] == c['sagas'] else 'WRONG'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sagas", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--hot-share", type=float, default=0.3, help="the share of orders on the hot SKU")
    parser.add_argument(
        "--restock-every-ms", type=float, default=50.0, help="a restock of the hot SKU this often"
    )
    args = parser.parse_args()
    cells = []
    for processes in args.processes:
        cell = asyncio.run(
            run(processes, args.sagas, args.concurrency, args.hot_share, args.restock_every_ms / 1000)
        )
        print(json.dumps(cell), flush=True)
        cells.append(cell)
    print(render(cells))


if __name__ == "__main__":
    main()
