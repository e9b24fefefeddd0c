"""The order saga workload both sides run: which SKU each order takes, and which must fail.

A failing saga orders a product that has no stock, so its reservation fails and it compensates by
cancelling the order; the DBOS peer (benchmarks/peer_dbos/run.py) draws its orders the same way.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_QUANTITY = 3
EMPTY_SKU = "SKU-EMPTY"
HOT_SKU = "SKU-HOT"
UNIFORM_SKUS = 100
# Every side draws the same orders: ordersaga's cells and the DBOS peer's.
SEED = 7


@dataclass(frozen=True, slots=True)
class Order:
    sku: str
    quantity: int

    @property
    def should_fail(self) -> bool:
        return self.sku == EMPTY_SKU


def skus(hot: bool) -> list[str]:
    return [HOT_SKU] if hot else [f"SKU-{i:03d}" for i in range(UNIFORM_SKUS)]


def orders(number: int, hot: bool, failure_rate: float, seed: int = SEED) -> list[Order]:
    rng, choices = random.Random(seed), skus(hot)
    return [
        Order(EMPTY_SKU if rng.random() < failure_rate else rng.choice(choices), rng.randint(1, MAX_QUANTITY))
        for _ in range(number)
    ]


WARMUP_HELP = "untimed sagas first, checked too (default: two waves of the concurrency, at least 10)"


def warmup(concurrency: int, chosen: int | None = None) -> int:
    """How many sagas a cell runs untimed before its timed ones (`chosen`, its `--warmup`, when
    given), the same rule for ordersaga's cells and the DBOS peer's; they are checked with the rest.
    The first wave of `concurrency` sagas arrives at once on a cold process, a cost paid once per
    process that would otherwise stand as a cell's p99 (docs/performance.md measures it). Two waves,
    at least 10 (the peer's warm-up before this rule)."""
    return max(10, 2 * concurrency) if chosen is None else chosen


def count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    number = int(text)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more")
    return number


def stock_per_sku(count: int) -> int:
    """Enough that no order falls short even if all land on one SKU: outcomes are decided up front."""
    return count * MAX_QUANTITY


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def books(outcomes: list[tuple[Order, str]], stock: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Every saga ended as its order requires (FAILED exactly for the failing ones), and stock is
    conserved: per SKU, on hand as received and reserved what the completed orders took.
    `stock` maps each SKU to (on hand, reserved) summed over its sections."""
    wrong = sum((status == "FAILED") != order.should_fail for order, status in outcomes)
    wanted: dict[str, int] = {}
    for order, status in outcomes:
        if status == "COMPLETED":
            wanted[order.sku] = wanted.get(order.sku, 0) + order.quantity
    received = stock_per_sku(len(outcomes))
    mismatched = sum(stock[sku] != (received, wanted.get(sku, 0)) for sku in stock)
    completed = sum(status == "COMPLETED" for _, status in outcomes)
    return {
        "completed": completed,
        "failed": len(outcomes) - completed,
        "wrong_outcome": wrong,
        "skus_not_conserved": mismatched,
        "correct": wrong == 0 and mismatched == 0,
    }


def cell_arguments(description: str | None, sagas: int, warms_up: bool = False) -> argparse.ArgumentParser:
    """The command line of one benchmark cell; with `warms_up`, its `--warmup` too."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sagas", type=int, default=sagas, help="timed sagas")
    if warms_up:
        parser.add_argument("--warmup", type=count, help=WARMUP_HELP)
    parser.add_argument("--hot", action="store_true", help="every order on one SKU")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--postgres", help="a PostgreSQL server URL to run on; a SQLite file without it")
    return parser


def emit(report: dict[str, Any], path: Path | None) -> None:
    """Print a cell's report, and write it to `path` if given."""
    text = json.dumps(report, indent=2)
    if path is not None:
        path.write_text(text)
    print(text)
