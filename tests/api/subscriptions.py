"""A graphql-transport-ws client over `websockets`, for subscription tests against a served instance."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

PROTOCOL = Subprotocol("graphql-transport-ws")


def websocket_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1) + "/graphql"


class SubscriptionClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._inbox: dict[str | None, deque[dict[str, Any]]] = defaultdict(deque)

    async def subscribe(self, operation_id: str, query: str, **variables: Any) -> None:
        payload = {"query": query, "variables": variables}
        await self.socket.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))

    async def next(self, operation_id: str, seconds: float = 10) -> dict[str, Any] | None:
        """The operation's next payload, or None once the server completed it."""
        message = await self._take(operation_id, seconds)
        if message["type"] == "complete":
            return None
        assert message["type"] == "next", message
        return message["payload"]  # type: ignore[no-any-return]

    async def pong(self, seconds: float = 10) -> dict[str, Any] | None:
        """The payload of the next message without an id, which must be a `pong`."""
        message = await self._take(None, seconds)
        assert message["type"] == "pong", message
        return message.get("payload")

    async def _take(self, operation_id: str | None, seconds: float) -> dict[str, Any]:
        inbox = self._inbox[operation_id]
        async with asyncio.timeout(seconds):
            while not inbox:
                message = json.loads(await self.socket.recv())
                self._inbox[message.get("id")].append(message)
        return inbox.popleft()

    async def refusal(self, operation_id: str, seconds: float = 10) -> list[dict[str, Any]]:
        """The errors the operation was refused with, whether sent as `error` or as a `next` that
        holds only errors."""
        async with asyncio.timeout(seconds):
            message = json.loads(await self.socket.recv())
        assert message["id"] == operation_id, message
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        return errors  # type: ignore[no-any-return]

    async def until_complete(self, operation_id: str) -> list[dict[str, Any]]:
        payloads = []
        while (payload := await self.next(operation_id)) is not None:
            payloads.append(payload)
        return payloads


@contextlib.asynccontextmanager
async def subscriptions(
    base_url: str, init: dict[str, Any] | None = None
) -> AsyncIterator[SubscriptionClient]:
    """A connection whose connection_init (with `init` as its payload) was acknowledged."""
    async with websockets.connect(websocket_url(base_url), subprotocols=[PROTOCOL]) as socket:
        message = (
            {"type": "connection_init"} if init is None else {"type": "connection_init", "payload": init}
        )
        await socket.send(json.dumps(message))
        async with asyncio.timeout(10):
            assert json.loads(await socket.recv()) == {"type": "connection_ack"}
        yield SubscriptionClient(socket)
