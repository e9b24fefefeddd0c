"""A request's objects are freed by reference counting as it ends, on each database: none is left
in a reference cycle for the collector to find (each request's executor, context and request were,
and the placement's work; docs/performance.md, lever 26)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from types import FunctionType

from graphql.execution import Executor
from starlette.requests import Request

from api.service import Service
from api.settings import Settings
from tests.api.server import graphql_client, place, stock

QUERY = "query ($id: ID!) { saga(id: $id) { id status order { lines { sku quantity } } } }"


@contextmanager
def cyclic_garbage() -> Iterator[list[object]]:
    """What becomes garbage within the block and only the collector could free."""
    gc.collect()
    gc.disable()
    found: list[object] = []
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_request_leaves_no_reference_cycle(database_url: str) -> None:
    async with graphql_client(Service(Settings(database_url=database_url))) as gql:
        await stock(gql, quantity=50)
        await place(gql, 1)  # what the first request of its kind makes once is not its garbage
        with cyclic_garbage() as garbage:
            for _ in range(5):
                placed = await place(gql, 1, awaitOutcomeMs=5000)
                assert (await gql(QUERY, id=placed["saga"]["id"]))["saga"]["status"] == "COMPLETED"
        left = [
            o
            for o in garbage
            if isinstance(o, Request | Executor)
            or (isinstance(o, FunctionType) and o.__module__.startswith(("api.", "domain.")))
        ]
    assert left == []
