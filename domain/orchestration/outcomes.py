"""What a commit announces: each committed SagaChange goes to the listeners (the live fan-out,
metrics, traces, logs, leases), and a saga that settles answers whoever waits for it
(`placeOrder(awaitOutcomeMs)`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from domain.model.saga import SagaChange, SagaState
from domain.orchestration.context import current_saga

log = logging.getLogger("ordersaga.saga")

# Listeners receive each committed SagaChange (domain/model/saga/fold.py) after the commit.
SagaListener = Callable[[SagaChange], None]


class Outcomes:
    def __init__(self, listeners: Iterable[SagaListener] = ()) -> None:
        self._listeners = list(listeners)
        self._watchers: dict[str, list[asyncio.Future[SagaState]]] = {}

    def add_listener(self, listener: SagaListener) -> None:
        self._listeners.append(listener)

    def publish(self, change: SagaChange) -> None:
        """Tell every listener of a committed change (a failing one is logged, the others still
        hear it), then answer the saga's watchers if it settled."""
        saga = current_saga.set(change.after.saga_id)
        try:
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("saga %s: a listener failed", change.after.saga_id)
        finally:
            current_saga.reset(saga)
        if change.after.is_settled:
            self.answer(change.after)

    def watch(self, saga_id: str) -> asyncio.Future[SagaState]:
        """A future of the saga once a commit settles it (finished, or parked for an operator). Only
        commits after this call count, so watch a new saga before its driver runs (right after
        `place_order` returns), and `unwatch` when no longer waiting. A saga that `place_order`
        returned settled (its first calls made in the placement's transaction) has nothing left to
        wait for."""
        watcher: asyncio.Future[SagaState] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(saga_id, []).append(watcher)
        return watcher

    def unwatch(self, saga_id: str, watcher: asyncio.Future[SagaState]) -> None:
        watchers = self._watchers.get(saga_id, [])
        if watcher in watchers:
            watchers.remove(watcher)
        if not watchers:
            self._watchers.pop(saga_id, None)

    def watching(self, saga_id: str) -> bool:
        return saga_id in self._watchers

    def answer(self, state: SagaState) -> None:
        """Resolve every watcher of the (settled) saga with `state`."""
        for watcher in self._watchers.pop(state.saga_id, []):
            if not watcher.done():
                watcher.set_result(state)
