"""A served instance for live tests: stocked, with a gate that can hold a participant's calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Row, event

from api.graphql.types import Saga
from api.service import Service
from api.settings import Settings
from tests.api.server import TLS, GraphQLClient, place, serve, stock
from tests.gates import Hold
from tests.held_reads import HeldReads
from tests.polling import eventually


@dataclass
class Live:
    svc: Service
    url: str
    gql: GraphQLClient
    gate: Hold

    async def place(self, quantity: int) -> str:
        """Place an order of TEA (5 in stock); the saga's id."""
        return (await place(self.gql, quantity))["saga"]["id"]  # type: ignore[index,no-any-return]

    async def until_subscribed(self, count: int) -> None:
        """Wait until the server has registered this many subscribers with the hub."""
        await eventually(lambda: self.svc.subscribers == count, f"{count} subscribers")

    @contextlib.asynccontextmanager
    async def read_pool_used_up(self) -> AsyncIterator[None]:
        """The read pool busy, as under load, for a service whose pool holds one connection
        (`read_pool_size=1`): the async engine's connection, which readers of several statements
        use, taken, and on SQLite every thread of the read engine, which a statement read alone
        takes (persistence/read/reader.py), busy with a read that waits for the test."""
        reads = self.svc.read_engine
        async with reads.engine.connect():
            if reads.blocking is None:
                yield
                return
            held = HeldReads(reads)
            running: list[asyncio.Task[int]] = []
            try:
                running = await held.running(*range(reads.blocking.pool.size()))  # type: ignore[attr-defined]
                yield
            finally:
                held.close()
                await asyncio.gather(*running)


@contextlib.asynccontextmanager
async def serve_live(settings: Settings, headers: dict[str, str] | None = None) -> AsyncIterator[Live]:
    """Served with the test's gate, or, with fault injection on, with the faults GraphQL stages (and
    a gate that holds nothing). The test's own requests carry `headers` (a token, say)."""
    gate = Hold()
    svc = Service(settings, gate=None if settings.fault_injection else gate)
    async with (
        serve(svc) as url,
        httpx.AsyncClient(base_url=url, timeout=10, headers=headers, verify=TLS) as http,
    ):
        gql = GraphQLClient(http)
        await stock(gql)
        yield Live(svc, url, gql, gate)


@contextlib.contextmanager
def reads_sent(svc: Service, record: Callable[..., Any]) -> Iterator[None]:
    """`record`, a listener of SQLAlchemy's "before_cursor_execute", sees every statement `svc`'s
    read side sends meanwhile, through either of its engines (persistence/read/reader.py)."""
    engines = [
        engine
        for engine in (svc.read_engine.engine.sync_engine, svc.read_engine.blocking)
        if engine is not None
    ]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def saga_renderings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the sagas rendered from now on, one entry per rendering, whatever asked for it."""
    rendered: list[str] = []
    render = Saga.from_row

    def counted(row: Row) -> Saga:
        rendered.append(row.id)
        return render(row)

    monkeypatch.setattr(Saga, "from_row", counted)
    return rendered
