"""Drive the DBOS peer saga at fixed concurrency levels and check its books.

    python -m benchmarks.peer_dbos.run --concurrency 1 16 64 --sagas 300 \\
        --uniform --failure-rate 0 --json out.json --workdir DIR \\
        [--variant datasource|plain] [--postgres postgresql://user@host/db]

``--variant`` picks how the steps are written (see saga.py: ``datasource``, the
default, is DBOS's recommendation for steps that write to an application
database; ``plain`` steps are at-least-once). ``--postgres`` puts both of DBOS's
databases on that server (fresh ones per level, dropped afterwards) instead of
SQLite files.

Each concurrency level runs in its own spawned process: DBOS keeps process-wide
state, and a fresh interpreter keeps one level's CPU time and warm caches out of
the next.  Each level starts from fresh database files under DIR.

Concurrency is a bounded pool of driver threads, each starting one workflow and
waiting for its result.  Threads, not DBOS's async API: a synchronous workflow
runs its steps straight on a thread, whereas DBOS's async path hands every
system-database call to a worker thread through ``asyncio.to_thread`` anyway (its
SQLite system database is synchronous SQLAlchemy) and reaches SQLite through
aiosqlite's own thread; tried on the same saga it spent about twice the CPU per
saga.  ``--launch inline`` (workflow on the driver thread) and a smaller
``--pool-size`` were within noise of the defaults for throughput; a small pool
trims the tail, since fewer connections sleep in SQLite's busy handler.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from benchmarks import workload
from benchmarks.databases import fresh_database
from benchmarks.peer_dbos.saga import VARIANTS, OrderInput, Peer, SagaResult, Variant, build
from benchmarks.workload import EMPTY_SKU, percentile


@dataclass(frozen=True)
class RunSpec:
    concurrency: int
    sagas: int
    distribution: Literal["hot", "uniform"]
    failure_rate: float
    launch: Literal["start", "inline"]
    pool_size: int
    warmup: int
    seed: int
    workdir: str
    variant: Variant = "datasource"
    postgres: str | None = None


def make_orders(spec: RunSpec) -> tuple[list[OrderInput], dict[str, int]]:
    """The same orders ordersaga's harness draws (benchmarks/workload.py), warm-up ones first."""
    total = spec.warmup + spec.sagas
    drawn = workload.orders(total, spec.distribution == "hot", spec.failure_rate, spec.seed)
    orders = [
        OrderInput(order_id=f"order-{i:06d}", sku=o.sku, quantity=o.quantity) for i, o in enumerate(drawn)
    ]
    stock = {sku: workload.stock_per_sku(total) for sku in workload.skus(spec.distribution == "hot")}
    return orders, stock | {EMPTY_SKU: 0}


def check_books(peer: Peer, orders: list[OrderInput], results: list[SagaResult]) -> dict[str, Any]:
    expected = {o["order_id"]: "FAILED" if o["sku"] == EMPTY_SKU else "COMPLETED" for o in orders}
    by_id = {r["order_id"]: r for r in results}
    wrong_outcome = sum(by_id[oid]["status"] != want for oid, want in expected.items())
    with peer.app_engine.connect() as conn:
        stock = conn.execute(sa.text("SELECT sku, on_hand, available, reserved FROM stock")).all()
        rows = conn.execute(sa.text("SELECT order_id, sku, quantity, status FROM orders")).all()
        shipments = conn.execute(sa.text("SELECT count(*) FROM shipments")).scalar_one()
    with peer.sys_engine.connect() as conn:
        # DBOS keeps its tables in a schema of their own on PostgreSQL.
        table = "workflow_status" if conn.dialect.name == "sqlite" else "dbos.workflow_status"
        status_counts = sa.text(f"SELECT status, count(*) FROM {table} GROUP BY status")
        wf_statuses: dict[str, int] = {s: n for s, n in conn.execute(status_counts)}
    want_row = {"COMPLETED": "SHIPPED", "FAILED": "CANCELLED"}
    wrong_rows = sum(want_row[expected[oid]] != status for oid, _, _, status in rows)
    shipped_qty: dict[str, int] = {}
    for _, sku, qty, status in rows:
        if status == "SHIPPED":
            shipped_qty[sku] = shipped_qty.get(sku, 0) + qty
    unconserved = sum(on_hand != available + reserved for _, on_hand, available, reserved in stock)
    reserved_mismatch = sum(reserved != shipped_qty.get(sku, 0) for sku, _, _, reserved in stock)
    completed = sum(r["status"] == "COMPLETED" for r in results)
    checks = {
        "sagas_total": len(orders),
        "completed": completed,
        "failed": len(results) - completed,
        "expected_failed": sum(o["sku"] == EMPTY_SKU for o in orders),
        "wrong_outcome": wrong_outcome,
        "order_rows": len(rows),
        "wrong_order_status": wrong_rows,
        "shipments": shipments,
        "skus_not_conserved": unconserved,
        "skus_reserved_mismatch": reserved_mismatch,
        "workflow_statuses": wf_statuses,
    }
    checks["correct"] = (
        wrong_outcome == 0
        and len(rows) == len(orders)
        and wrong_rows == 0
        and shipments == completed
        and unconserved == 0
        and reserved_mismatch == 0
        and wf_statuses == {"SUCCESS": len(orders)}
    )
    return checks


def run_one(spec: RunSpec) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    workdir = Path(spec.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with (
        fresh_database(spec.postgres, workdir, "peer_app") as app,
        fresh_database(spec.postgres, workdir, "peer_sys") as system,
    ):
        return _measure(spec, load_before, app.blocking_url, system.blocking_url)


def _measure(spec: RunSpec, load_before: float, app_url: str, system_url: str) -> dict[str, Any]:
    orders, stock = make_orders(spec)
    peer = build(app_url, system_url, stock, spec.variant, pool_size=spec.pool_size)
    launch = peer.run if spec.launch == "start" else peer.run_inline

    def timed(order: OrderInput) -> tuple[SagaResult, float]:
        t0 = time.perf_counter()
        result = launch(order)
        return result, time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(max_workers=spec.concurrency) as pool:
            warm = list(pool.map(timed, orders[: spec.warmup]))
            app0, sys0 = peer.app_counter.snapshot(), peer.sys_counter.snapshot()
            cpu0, t0 = time.process_time(), time.perf_counter()
            measured = list(pool.map(timed, orders[spec.warmup :]))
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            app1, sys1 = peer.app_counter.snapshot(), peer.sys_counter.snapshot()
        results = [r for r, _ in warm + measured]
        checks = check_books(peer, orders, results)
    finally:
        peer.shutdown()

    n = len(measured)
    latencies = sorted(lat * 1000 for _, lat in measured)
    return {
        **asdict(spec),
        # Other work on the machine skews every figure; this says how much there was.
        "loadavg_1m_before": round(load_before, 2),
        "elapsed_s": round(elapsed, 3),
        "sagas_per_s": round(n / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2),
        "warmup_max_ms": round(max((lat * 1000 for _, lat in warm), default=0.0), 2),
        "cpu_s_per_saga": round(cpu / n, 5),
        "commits_per_saga": round((app1[0] - app0[0] + sys1[0] - sys0[0]) / n, 2),
        "app_db_commits_per_saga": round((app1[0] - app0[0]) / n, 2),
        "system_db_commits_per_saga": round((sys1[0] - sys0[0]) / n, 2),
        "statements_per_saga": round((app1[1] - app0[1] + sys1[1] - sys0[1]) / n, 2),
        # Every saga makes exactly one reservation (stock is plentiful).
        "cas_conflicts_per_reservation": round(sum(r["cas_conflicts"] for r, _ in measured) / n, 4),
        **checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--sagas", type=int, default=300)
    dist = parser.add_mutually_exclusive_group()
    dist.add_argument("--hot-sku", dest="distribution", action="store_const", const="hot")
    dist.add_argument("--uniform", dest="distribution", action="store_const", const="uniform")
    parser.set_defaults(distribution="uniform")
    parser.add_argument("--failure-rate", type=float, default=0.05)
    parser.add_argument(
        "--launch",
        choices=["start", "inline"],
        default="start",
        help="start: DBOS.start_workflow + get_result (as in DBOS's demos); "
        "inline: call the workflow on the driver thread",
    )
    parser.add_argument("--pool-size", type=int, default=20, help="connections per SQLite engine")
    parser.add_argument("--warmup", type=workload.count, help=workload.WARMUP_HELP)
    parser.add_argument("--seed", type=int, default=workload.SEED)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--variant", choices=VARIANTS, default="datasource")
    parser.add_argument("--postgres", help="a PostgreSQL server URL; SQLite files without it")
    args = parser.parse_args(argv)

    base = args.workdir or Path(tempfile.mkdtemp(prefix="peer-dbos-"))
    runs = []
    for concurrency in args.concurrency:
        spec = RunSpec(
            concurrency=concurrency,
            sagas=args.sagas,
            distribution=args.distribution,
            failure_rate=args.failure_rate,
            launch=args.launch,
            pool_size=args.pool_size,
            warmup=workload.warmup(concurrency, args.warmup),
            seed=args.seed,
            workdir=str(base / f"{args.distribution}-c{concurrency}"),
            variant=args.variant,
            postgres=args.postgres,
        )
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as proc:
            result = proc.submit(run_one, spec).result()
        runs.append(result)
        print(
            f"dbos {spec.variant} {spec.distribution} c={concurrency}: {result['sagas_per_s']} sagas/s"
            f" p50={result['p50_ms']}ms p99={result['p99_ms']}ms"
            f" cpu/saga={result['cpu_s_per_saga'] * 1000:.2f}ms"
            f" commits/saga={result['commits_per_saga']}"
            f" cas/res={result['cas_conflicts_per_reservation']}"
            f" correct={result['correct']}",
            flush=True,
        )
    report = {
        "peer": "dbos",
        "dbos_version": version("dbos"),
        "python": sys.version.split()[0],
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["correct"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
