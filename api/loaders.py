"""DataLoaders, made per request: every saga, order, timeline or shipment that a response needs is
read in one query per kind, however many objects ask for it (no N+1)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from sqlalchemy import Row
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from persistence.queries import ReadModel


@dataclass(frozen=True, slots=True)
class Loaders:
    sagas: DataLoader[str, Row | None]
    orders: DataLoader[str, Row | None]
    timelines: DataLoader[str, list[Row]]
    shipments: DataLoader[str, Row | None]  # by order id
    shipments_by_id: DataLoader[str, Row | None]
    leases: DataLoader[str, Row | None]  # by saga id


def make_loaders(read: ReadModel, *, cache: bool = True) -> Loaders:
    return Loaders(
        sagas=DataLoader(_one_each(read.sagas, "id"), cache=cache),
        orders=DataLoader(_one_each(read.orders, "id"), cache=cache),
        timelines=DataLoader(_all_each(read.timelines, "saga_id"), cache=cache),
        shipments=DataLoader(_one_each(read.shipments, "order_id"), cache=cache),
        shipments_by_id=DataLoader(_one_each(read.shipments_by_id, "id"), cache=cache),
        leases=DataLoader(_one_each(read.leases, "saga_id"), cache=cache),
    )


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
