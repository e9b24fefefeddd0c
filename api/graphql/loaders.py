"""DataLoaders, per request: every saga, order, timeline or shipment that a response needs is read in
one query per kind, however many objects ask for it (no N+1). Each loader is made when a resolver
first asks for it, so a request that reads none of them (placeOrder, most mutations) pays for none."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from functools import cached_property

from sqlalchemy import Row
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from persistence.read.queries import ReadModel


class Loaders:
    """One request's loaders. With `cache` off they batch the loads of one tick but remember nothing
    (a WebSocket's context lives as long as its connection)."""

    def __init__(self, read: ReadModel, *, cache: bool = True) -> None:
        self._read = read
        self._cache = cache

    @cached_property
    def sagas(self) -> DataLoader[str, Row | None]:
        return DataLoader(_one_each(self._read.sagas, "id"), cache=self._cache)

    @cached_property
    def orders(self) -> DataLoader[str, Row | None]:
        return DataLoader(_one_each(self._read.orders, "id"), cache=self._cache)

    @cached_property
    def timelines(self) -> DataLoader[str, list[Row]]:
        return DataLoader(_all_each(self._read.timelines, "saga_id"), cache=self._cache)

    @cached_property
    def shipments(self) -> DataLoader[str, list[Row]]:
        """By order id: each order's shipments, in warehouse code order."""
        return DataLoader(_all_each(self._read.shipments, "order_id"), cache=self._cache)

    @cached_property
    def shipments_by_id(self) -> DataLoader[str, Row | None]:
        return DataLoader(_one_each(self._read.shipments_by_id, "id"), cache=self._cache)

    @cached_property
    def leases(self) -> DataLoader[str, Row | None]:
        """By saga id."""
        return DataLoader(_one_each(self._read.leases, "saga_id"), cache=self._cache)


def loaders(info: Info) -> Loaders:
    return info.context["loaders"]  # type: ignore[no-any-return]


Fetch = Callable[[Sequence[str]], Awaitable[Sequence[Row]]]


def _one_each(fetch: Fetch, key: str) -> Callable[[list[str]], Awaitable[list[Row | None]]]:
    async def load(keys: list[str]) -> list[Row | None]:
        found: dict[Hashable, Row] = {getattr(row, key): row for row in await fetch(keys)}
        return [found.get(k) for k in keys]

    return load


def _all_each(fetch: Fetch, key: str) -> Callable[[list[str]], Awaitable[list[list[Row]]]]:
    async def load(keys: list[str]) -> list[list[Row]]:
        found: dict[Hashable, list[Row]] = defaultdict(list)
        for row in await fetch(keys):
            found[getattr(row, key)].append(row)
        return [found.get(k, []) for k in keys]

    return load
