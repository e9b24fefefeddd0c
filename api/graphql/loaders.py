"""DataLoaders, per request: every saga, order, timeline or shipment that a response needs is read in
one query per kind, however many objects ask for it (no N+1). Each loader is made when a resolver
first asks for it, so a request that reads none of them (placeOrder, most mutations) pays for none."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from persistence.read.rows import LeaseRow, OrderRow, SagaRow, ShipmentRow, TransitionRow
from persistence.read.sagas import SagaReads

R = TypeVar("R")


class Loaders:
    """One request's loaders. With `cache` off they batch the loads of one tick but remember nothing
    (a WebSocket's context lives as long as its connection)."""

    def __init__(self, read: SagaReads, *, cache: bool = True) -> None:
        self._read = read
        self._cache = cache

    @cached_property
    def sagas(self) -> DataLoader[str, SagaRow | None]:
        return DataLoader(_one_each(self._read.sagas, lambda row: row.id), cache=self._cache)

    @cached_property
    def orders(self) -> DataLoader[str, OrderRow | None]:
        return DataLoader(_one_each(self._read.orders, lambda row: row.id), cache=self._cache)

    @cached_property
    def timelines(self) -> DataLoader[str, list[TransitionRow]]:
        return DataLoader(_all_each(self._read.timelines, lambda row: row.saga_id), cache=self._cache)

    @cached_property
    def shipments(self) -> DataLoader[str, list[ShipmentRow]]:
        """By order id: each order's shipments, in warehouse code order."""
        return DataLoader(_all_each(self._read.shipments, lambda row: row.order_id), cache=self._cache)

    @cached_property
    def shipments_by_id(self) -> DataLoader[str, ShipmentRow | None]:
        return DataLoader(_one_each(self._read.shipments_by_id, lambda row: row.id), cache=self._cache)

    @cached_property
    def leases(self) -> DataLoader[str, LeaseRow | None]:
        """By saga id."""
        return DataLoader(_one_each(self._read.leases, lambda row: row.saga_id), cache=self._cache)


def loaders(info: Info) -> Loaders:
    return info.context["loaders"]  # type: ignore[no-any-return]


def _one_each(
    fetch: Callable[[Sequence[str]], Awaitable[Sequence[R]]], key: Callable[[R], str]
) -> Callable[[list[str]], Awaitable[list[R | None]]]:
    async def load(keys: list[str]) -> list[R | None]:
        found = {key(row): row for row in await fetch(keys)}
        return [found.get(k) for k in keys]

    return load


def _all_each(
    fetch: Callable[[Sequence[str]], Awaitable[Sequence[R]]], key: Callable[[R], str]
) -> Callable[[list[str]], Awaitable[list[list[R]]]]:
    async def load(keys: list[str]) -> list[list[R]]:
        found: dict[str, list[R]] = defaultdict(list)
        for row in await fetch(keys):
            found[key(row)].append(row)
        return [found.get(k, []) for k in keys]

    return load
