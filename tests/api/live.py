"""A served instance for live tests: stocked, with a gate that can hold a participant's calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from api.service import Service
from api.settings import Settings
from tests.api.server import GraphQLClient, place, serve, stock
from tests.gates import Hold
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
        await eventually(lambda: self.svc.hub.subscribers == count, f"{count} subscribers")


@contextlib.asynccontextmanager
async def serve_live(settings: Settings, headers: dict[str, str] | None = None) -> AsyncIterator[Live]:
    """Served with the test's gate, or, with fault injection on, with the faults GraphQL stages (and
    a gate that holds nothing). The test's own requests carry `headers` (a token, say)."""
    gate = Hold()
    svc = Service(settings, gate=None if settings.fault_injection else gate)
    async with serve(svc) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as http:
        gql = GraphQLClient(http)
        await stock(gql)
        yield Live(svc, url, gql, gate)
