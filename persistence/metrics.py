"""Counters kept by the persistence layer, for /metrics and the benchmark report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class StoreMetrics:
    commits: int = 0
    committed_work: int = 0
    isolated_batches: int = 0
    # Compare-and-swap on stock rows: a conflict is a version (or row lock) that moved under a
    # reservation; each conflict costs one retry, and exhausted retries become a transient failure.
    stock_reservations: int = 0
    stock_conflicts: int = 0
    stock_conflicts_exhausted: int = 0
