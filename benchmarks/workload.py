"""The order saga workload both sides run: which SKU each order takes, and which must fail.

A failing saga orders a product that has no stock, so its reservation fails and it compensates by
cancelling the order; the DBOS peer (benchmarks/peer_dbos/run.py) draws its orders the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_QUANTITY = 3
EMPTY_SKU = "SKU-EMPTY"
HOT_SKU = "SKU-HOT"
UNIFORM_SKUS = 100


@dataclass(frozen=True, slots=True)
class Order:
    sku: str
    quantity: int

    @property
    def should_fail(self) -> bool:
        return self.sku == EMPTY_SKU


def skus(hot: bool) -> list[str]:
    return [HOT_SKU] if hot else [f"SKU-{i:03d}" for i in range(UNIFORM_SKUS)]


def orders(count: int, hot: bool, failure_rate: float, seed: int = 7) -> list[Order]:
    rng, choices = random.Random(seed), skus(hot)
    return [
        Order(EMPTY_SKU if rng.random() < failure_rate else rng.choice(choices), rng.randint(1, MAX_QUANTITY))
        for _ in range(count)
    ]


def stock_per_sku(count: int) -> int:
    """Enough that no order falls short even if all land on one SKU: outcomes are decided up front."""
    return count * MAX_QUANTITY


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
