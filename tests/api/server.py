"""A real ordersaga server on a loopback port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from api.service import Service
from api.settings import Settings
from api.web.app import create_app
from api.web.http_server import server_config
from tests.polling import eventually

# One TLS context for every test client: httpx builds a new one per client otherwise (loading the CA
# certificates, about 45 ms each), and clients are made hundreds of times in a run.
TLS = ssl.create_default_context()


@contextlib.asynccontextmanager
async def serve(svc: Service) -> AsyncIterator[str]:
    async with serve_app(create_app(svc), svc.settings) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp, settings: Settings | None = None, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app on loopback `port` (0: a free one), in this event loop, with `settings`'
    limits (the defaults without); its base URL."""
    config = server_config(app, settings or Settings(database_url=""), "127.0.0.1", port)
    server = _PromptServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        await task  # raises what stopped it
        raise RuntimeError("the server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await task


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopping as soon as it is asked. uvicorn itself looks whether it should stop
    every tenth of a second, and then waits another tenth before it closes connections that are
    still open: a sixth of a second, which hundreds of served tests spent idle."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._asked = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._asked.set()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers (Date, Server), as uvicorn's first tick sets them
        await self._asked.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own shutdown without its pause: close the listener, ask open connections to close
        # (each once its response is out), wait until they have, then the application's shutdown.
        for listener in self.servers:
            listener.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        state = self.server_state
        try:
            await eventually(lambda: not (state.connections or state.tasks), "the connections to close")
            for listener in self.servers:
                await listener.wait_closed()
        finally:
            await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def graphql_client(svc: Service, **http_options: Any) -> AsyncIterator[GraphQLClient]:
    """Serve `svc` and talk GraphQL to it over HTTP; `http_options` go to the httpx client."""
    http_options.setdefault("timeout", 10)
    http_options.setdefault("verify", TLS)
    async with serve(svc) as base_url, httpx.AsyncClient(base_url=base_url, **http_options) as http:
        yield GraphQLClient(http)


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]

    async def wait_for_saga(self, saga_id: str, *statuses: str, seconds: float = 10) -> dict[str, Any]:
        saga: dict[str, Any] = {}
        for _ in range(int(seconds / 0.05)):
            saga = (await self(SAGA, id=saga_id))["saga"]
            if saga["status"] in statuses:
                return saga
            await asyncio.sleep(0.05)
        raise AssertionError(f"saga did not reach {statuses}: {saga}")


SAGA = """
query ($id: ID!) {
  saga(id: $id) {
    id status failureReason
    order {
      id status customerId lines { sku quantity }
      shipment { id picks { warehouseCode sectionCode sku quantity } }
      shipments { id warehouseCode status picks { warehouseCode sectionCode sku quantity } }
    }
    steps { name status attempts startedAt finishedAt }
    events { sequence type occurredAt step reason }
  }
}
"""


PLACE = """
mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id status } saga { id status } userErrors { code field message } }
}
"""


async def stock(gql: GraphQLClient, quantity: int = 5) -> None:
    """One warehouse section holding `quantity` of the product TEA."""
    await gql(
        """mutation ($quantity: Int!) {
          a: registerWarehouse(
            input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]}
          ) { userErrors { code } }
          b: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) {
            userErrors { code } }
          c: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: $quantity}) {
            stockLevel { onHand } userErrors { code } }
        }""",
        quantity=quantity,
    )


async def place(gql: GraphQLClient, quantity: int, **extra: object) -> dict[str, Any]:
    order = {"customerId": "customer-1", "lines": [{"sku": "TEA", "quantity": quantity}], **extra}
    return (await gql(PLACE, input=order))["placeOrder"]  # type: ignore[no-any-return]


FAULT = """
mutation ($input: SetParticipantFaultInput!) {
  setParticipantFault(input: $input) {
    faults { participant delayMs failNext failureRate } userErrors { code field message }
  }
}
"""


async def stage(gql: GraphQLClient, participant: str, **fault: object) -> list[dict[str, Any]]:
    """Stage a fault (fault injection must be on) and answer every fault staged now."""
    payload = (await gql(FAULT, input={"participant": participant, **fault}))["setParticipantFault"]
    assert payload["userErrors"] == []
    return payload["faults"]  # type: ignore[no-any-return]
