"""A WebSocket client that stops reading is cut off after its buffers fill; no one else waits for it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine
from tests.api.live import serve_live
from tests.api.subscriptions import PROTOCOL, subscriptions
from tests.polling import eventually

# Large messages, so that a few sagas fill what the operating system buffers for the socket.
HEAVY_FEED = """subscription { sagaFeed { sequence type status step reason
  saga { id status failureReason startedAt updatedAt events { sequence type status step reason } } } }"""
FEED = "subscription { sagaFeed { sequence status saga { id } } }"
PLAIN_QUERY = "query ($id: ID!) { saga(id: $id) { events { sequence } } }"
TERMINAL = {"COMPLETED", "FAILED"}


class UnreadSocket:
    """A graphql-transport-ws client on a raw TCP socket with a receive window as small as the
    system allows, that reads nothing after its connection_ack until asked to."""

    def __init__(self, base_url: str) -> None:
        address = urlsplit(base_url)
        self.raw = socket.socket()
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.raw.settimeout(10)
        self.raw.connect((address.hostname, address.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.raw.sendall(
            f"GET /graphql HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n".encode()
        )
        self.received = self._until(b"\r\n\r\n")
        assert self.received.startswith(b"HTTP/1.1 101"), self.received

    def send(self, message: dict[str, Any]) -> None:
        """One masked text frame (RFC 6455 5.2), as clients must send."""
        data, mask = json.dumps(message).encode(), os.urandom(4)
        header = bytes([0x81]) + (
            bytes([0x80 | len(data)])
            if len(data) < 126
            else bytes([0x80 | 126]) + struct.pack("!H", len(data))
        )
        self.raw.sendall(header + mask + bytes(b ^ mask[n % 4] for n, b in enumerate(data)))

    def _until(self, marker: bytes) -> bytes:
        received = b""
        while marker not in received:
            chunk = self.raw.recv(65536)
            assert chunk, received[-200:]
            received += chunk
        return received

    def read_to_the_end(self) -> bytes:
        """Everything the server sent until it closed the connection."""
        received = b""
        while chunk := self.raw.recv(65536):
            received += chunk
        return received


async def test_a_socket_that_stops_reading_is_closed_and_holds_back_no_other(database_url: str) -> None:
    settings = Settings(database_url=database_url, send_timeout=timedelta(seconds=1))
    async with (
        serve_live(settings) as live,
        subscriptions(live.url) as reader,
    ):
        stuck = await asyncio.to_thread(UnreadSocket, live.url)
        stuck.send({"type": "connection_init"})
        assert b"connection_ack" in await asyncio.to_thread(stuck._until, b"connection_ack")
        for n in range(10):
            stuck.send({"id": f"s{n}", "type": "subscribe", "payload": {"query": HEAVY_FEED}})
        await reader.subscribe("feed", FEED)
        await live.until_subscribed(11)

        received: dict[str, list[int]] = {}
        ended: set[str] = set()

        async def read_the_feed() -> None:
            while True:
                update: dict[str, Any] = (await reader.next("feed"))["data"]["sagaFeed"]  # type: ignore[index]
                received.setdefault(update["saga"]["id"], []).append(update["sequence"])
                if update["status"] in TERMINAL:
                    ended.add(update["saga"]["id"])

        reading = asyncio.create_task(read_the_feed())
        placed: list[str] = []
        async with asyncio.timeout(60):
            while live.svc.subscribers > 1:  # until the server stopped the unread socket's feeds
                order = PlaceOrder(f"c-{len(placed)}", (OrderLine("TEA", 1),))
                placed.append((await live.svc.orchestrator.place_order(order)).saga_id)
                await asyncio.sleep(0.05)
            # Meanwhile requests are answered...
            latest = await live.gql(
                "query ($id: ID!) { saga(id: $id) { events { sequence } } }", id=placed[-1]
            )
            assert latest["saga"]["events"][0]["sequence"] == 1
            # ... and the reading subscriber receives every transition of every saga, in order.
            await eventually(lambda: ended.issuperset(placed) or reading.done(), "every saga's end", 30)
            reading.cancel()
            assert set(received) == set(placed)
            assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in received.values())

            # What was sent before the close still arrives, then the close frame says why.
            sent = await asyncio.to_thread(stuck.read_to_the_end)
        reason = b"Try Again Later: the client did not read what was sent"
        assert sent.endswith(bytes([0x88, 2 + len(reason)]) + struct.pack("!H", 1013) + reason)
