"""ordersaga's engine alone: the orchestrator in process, placing orders and awaiting their sagas.

python -m benchmarks.engine --concurrency 64 --sagas 2000 [--hot] [--failure-rate 0.05] [--json F]
                            [--postgres postgresql://user@host/db]
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.service import Service
from api.settings import Settings
from benchmarks import workload
from benchmarks.databases import Database, fresh_database
from domain.model.commands import PlaceOrder
from domain.model.saga import TERMINAL_STATUSES, SagaChange, SagaStatus
from domain.model.values import OrderLine, StorageCondition
from persistence.connection import Db
from persistence.write import catalog


async def run(
    concurrency: int, sagas: int, hot: bool, failure_rate: float, database: Database, warmup: int = 0
) -> dict[str, Any]:
    """One cell: `warmup` sagas untimed, then `sagas` timed. Throughput, latencies, CPU and commits
    are the timed sagas'; `warmup_max_ms` is the slowest warm-up saga (the cold start); the checks
    (outcomes and stock) cover every saga."""
    load_before = os.getloadavg()[0]
    orders = workload.orders(warmup + sagas, hot, failure_rate)
    svc = Service(Settings(database_url=database.async_url, freeze_start_up=True))  # as `serve` runs
    await svc.start()
    await svc.write(lambda db: _stock(db, workload.skus(hot), workload.stock_per_sku(len(orders))))
    finished: dict[str, asyncio.Future[SagaStatus]] = {}

    def on_change(change: SagaChange) -> None:
        waiter = finished.get(change.after.saga_id)
        if waiter is not None and change.after.status in TERMINAL_STATUSES and not waiter.done():
            waiter.set_result(change.after.status)

    svc.orchestrator.add_listener(on_change)
    gate, latencies, outcomes = asyncio.Semaphore(concurrency), [], []

    async def one(order: workload.Order) -> None:
        async with gate:
            started = time.perf_counter()
            placed = await svc.orchestrator.place_order(
                PlaceOrder("bench", (OrderLine(order.sku, order.quantity),))
            )
            if placed.state is not None and placed.state.status in TERMINAL_STATUSES:
                status = placed.state.status  # ended in the placement's own transaction (SQLite)
            else:
                # The saga's driver starts only after place_order has returned, so the waiter is in time.
                waiter = finished.setdefault(placed.saga_id, asyncio.get_running_loop().create_future())
                status = await waiter
            latencies.append(time.perf_counter() - started)
            outcomes.append((order, status))

    await asyncio.gather(*(one(o) for o in orders[:warmup]))
    warmed = max(latencies, default=0.0)
    latencies.clear()
    metrics = svc.metrics
    commits0, conflicts0, cpu0, t0 = (
        metrics.commits,
        metrics.stock_conflicts,
        time.process_time(),
        time.perf_counter(),
    )
    await asyncio.gather(*(one(o) for o in orders[warmup:]))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    checks = await _check_books(svc, outcomes, hot)
    report = {
        "mode": "engine",
        "database": database.kind,
        "concurrency": concurrency,
        "sagas": sagas,
        "warmup": warmup,
        "distribution": "hot" if hot else "uniform",
        "failure_rate": failure_rate,
        "loadavg_1m_before": round(load_before, 2),
        "warmup_max_ms": round(warmed * 1000, 2),
        "sagas_per_s": round(sagas / elapsed, 1),
        **_latency(latencies),
        "cpu_s_per_saga": round(cpu / sagas, 5),
        "commits_per_saga": round((metrics.commits - commits0) / sagas, 3),
        "cas_conflicts_per_reservation": round((metrics.stock_conflicts - conflicts0) / sagas, 4),
        **checks,
    }
    await svc.stop()
    return report


def _latency(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(workload.percentile(ordered, 50) * 1000, 2),
        "p99_ms": round(workload.percentile(ordered, 99) * 1000, 2),
    }


async def _stock(db: Db, skus: list[str], quantity: int) -> None:
    await catalog.register_warehouse(db, "W1", "Bench", [("A", StorageCondition.AMBIENT)])
    for sku in [*skus, workload.EMPTY_SKU]:
        await catalog.register_product(db, sku, sku, StorageCondition.AMBIENT)
    for sku in skus:
        await catalog.receive_stock(db, sku, "W1", "A", quantity, datetime.now(UTC))


async def _check_books(
    svc: Service, outcomes: list[tuple[workload.Order, SagaStatus]], hot: bool
) -> dict[str, Any]:
    stock = {}
    for sku in workload.skus(hot):
        levels = await svc.catalog.stock_levels(sku)
        stock[sku] = (sum(level.on_hand for level in levels), sum(level.reserved for level in levels))
    return workload.books([(order, status.value) for order, status in outcomes], stock)


def main() -> None:
    # The failing sagas of a workload fail on purpose; their warnings would only be noise here.
    logging.basicConfig(level=logging.ERROR)
    parser = workload.cell_arguments(__doc__, sagas=2000, warms_up=True)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="ordersaga-bench-") as workdir,
        fresh_database(args.postgres, Path(workdir), "engine") as database,
    ):
        cell = (args.concurrency, args.sagas, args.hot, args.failure_rate, database)
        report = asyncio.run(run(*cell, warmup=workload.warmup(args.concurrency, args.warmup)))
    workload.emit(report, args.json)


if __name__ == "__main__":
    main()
