"""Counters kept by the persistence layer, for /metrics and the benchmark report."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class StoreMetrics:
    commits: int = 0
    committed_work: int = 0
    isolated_batches: int = 0
    # Conditional writes on stock rows. A reservation counts each time it runs (a retried step, or a
    # re-run after its batch failed, counts again); a conflict is a row that no longer had enough
    # left when written, after which it reads again (one that conflicts RESERVE_ATTEMPTS times is
    # exhausted and reported as a transient failure), or, on PostgreSQL, a stock row that work found
    # held by another transaction, after which it waits for it (persistence/write/stock_locks.py).
    stock_reservations: int = 0
    stock_conflicts: int = 0
    stock_conflicts_exhausted: int = 0
    # Work rolled back by contention (a lock timeout, a deadlock, a serialization failure) and run
    # again by the transaction runner.
    contention_retries: int = 0
