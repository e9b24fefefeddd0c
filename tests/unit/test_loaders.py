"""A request's DataLoaders are made only when a resolver asks, then serve the whole request."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from strawberry.dataloader import DataLoader

from api.graphql import loaders as loaders_module
from api.graphql.loaders import Loaders


class _SagaReads:
    def __init__(self) -> None:
        self.fetches: list[list[str]] = []

    async def sagas(self, keys: Sequence[str]) -> list[Any]:
        self.fetches.append(list(keys))
        return [SimpleNamespace(id=k) for k in keys if k != "missing"]


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[DataLoader[Any, Any]]:
    made: list[DataLoader[Any, Any]] = []

    class Counted(DataLoader[Any, Any]):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(loaders_module, "DataLoader", Counted)
    return made


def test_a_request_that_reads_nothing_makes_no_loader(made: list[DataLoader[Any, Any]]) -> None:
    Loaders(_SagaReads())  # type: ignore[arg-type]
    assert made == []


async def test_the_loader_asked_for_is_made_once_and_batches_the_request(
    made: list[DataLoader[Any, Any]],
) -> None:
    read = _SagaReads()
    request = Loaders(read)  # type: ignore[arg-type]
    rows = await asyncio.gather(*(request.sagas.load(k) for k in ("a", "b", "missing")))
    assert [getattr(r, "id", None) for r in rows] == ["a", "b", None]
    assert getattr(await request.sagas.load("a"), "id", None) == "a"  # remembered: no second fetch
    assert read.fetches == [["a", "b", "missing"]]
    assert len(made) == 1 and request.sagas is made[0]


async def test_uncached_loaders_batch_but_fetch_again(made: list[DataLoader[Any, Any]]) -> None:
    read = _SagaReads()
    request = Loaders(read, cache=False)  # type: ignore[arg-type]
    await request.sagas.load("a")
    await request.sagas.load("a")
    assert read.fetches == [["a"], ["a"]]
