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

import pytest

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
        self._buffer = b""  # what arrived and was not taken yet
        head = self._until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, message: dict[str, Any]) -> None:
        """One masked text frame (RFC 6455 5.2), as clients must send."""
        data, mask = json.dumps(message).encode(), os.urandom(4)
        header = bytes([0x81]) + (
            bytes([0x80 | len(data)])
            if len(data) < 126
            else bytes([0x80 | 126]) + struct.pack("!H", len(data))
        )
        self.raw.sendall(header + mask + bytes(b ^ mask[n % 4] for n, b in enumerate(data)))

    def _receive(self) -> None:
        chunk = self.raw.recv(65536)
        assert chunk, self._buffer[-200:]
        self._buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        """What arrives through `marker` (the HTTP answer's head)."""
        while marker not in self._buffer:
            self._receive()
        end = self._buffer.index(marker) + len(marker)
        taken, self._buffer = self._buffer[:end], self._buffer[end:]
        return taken

    def next_frame(self) -> bytes:
        """The next whole frame the server sent, as it arrived."""
        while (end := _frame_end(self._buffer)) is None:
            self._receive()
        frame, self._buffer = self._buffer[:end], self._buffer[end:]
        return frame

    def read_to_the_close(self) -> bytes:
        """Every frame the server sent, through its close frame, which is then answered as RFC 6455
        5.5.1 asks (rather than left for the server to wait out)."""
        received = b""
        while True:
            frame = self.next_frame()
            received += frame
            if frame[0] & 0x0F == 0x8:
                self.raw.sendall(bytes([0x88, 0x80]) + os.urandom(4))
                return received


def _frame_end(data: bytes) -> int | None:
    """Where the unmasked (server's) frame that `data` starts with ends, once it is whole (RFC 6455
    5.2: a 7-bit length, or 126 and 16 bits, or 127 and 64 bits)."""
    if len(data) < 2:
        return None
    length, at = data[1] & 0x7F, 2
    if length >= 126:
        size = 2 if length == 126 else 8
        if len(data) < at + size:
            return None
        length, at = int.from_bytes(data[at : at + size], "big"), at + size
    return at + length if len(data) >= at + length else None


@pytest.mark.slow  # fills a socket's buffers until the server gives up on it
async def test_a_socket_that_stops_reading_is_closed_and_holds_back_no_other(database_url: str) -> None:
    settings = Settings(database_url=database_url, send_timeout=timedelta(seconds=1))
    async with (
        serve_live(settings) as live,
        subscriptions(live.url) as reader,
    ):
        stuck = await asyncio.to_thread(UnreadSocket, live.url)
        stuck.send({"type": "connection_init"})
        assert b"connection_ack" in await asyncio.to_thread(stuck.next_frame)
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
            sent = await asyncio.to_thread(stuck.read_to_the_close)
        reason = b"Try Again Later: the client did not read what was sent"
        assert sent.endswith(bytes([0x88, 2 + len(reason)]) + struct.pack("!H", 1013) + reason)
