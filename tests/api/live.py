"""A served instance for live tests: stocked, with a gate that can hold a participant's calls."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from api.service import Service
from api.settings import Settings
from domain.saga import Participant
from tests.api.server import GraphQLClient, serve
from tests.api.test_graphql_http import place, stock
from tests.polling import eventually


class Hold:
    """A gate that holds a participant's calls until the test releases them."""

    def __init__(self) -> None:
        self._released: dict[Participant, asyncio.Event] = {}

    def hold(self, participant: Participant) -> None:
        self._released[participant] = asyncio.Event()

    def release(self, participant: Participant) -> None:
        self._released.pop(participant).set()

    async def admit(self, participant: Participant) -> None:
        if participant in self._released:
            await self._released[participant].wait()


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
async def serve_live(settings: Settings) -> AsyncIterator[Live]:
    gate = Hold()
    svc = Service(settings, gate=gate)
    async with serve(svc) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        gql = GraphQLClient(http)
        await stock(gql)
        yield Live(svc, url, gql, gate)
