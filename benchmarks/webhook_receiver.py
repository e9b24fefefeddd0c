"""The webhook receiver of `benchmarks.fullstack --webhook`, in a process of its own:

    python -m benchmarks.webhook_receiver --port 8765

It answers every POST 204 and notes when each `webhook-id` first arrived (time.monotonic, which every
process on the machine reads alike); GET /arrived answers `{"requests": n, "arrived": {id: seconds}}`.
It does not verify signatures: the tests do. It runs apart from the load generator so that its work
delays neither the clients' requests nor their timing, and it is an HTTP/1.1 protocol on httptools
rather than a web framework, so that on a machine whose cores the measured server shares it takes
as little of them as a receiver elsewhere would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httptools

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class Arrivals:
    def __init__(self) -> None:
        self.requests = 0
        self.arrived: dict[str, float] = {}

    def report(self) -> bytes:
        body = json.dumps({"requests": self.requests, "arrived": self.arrived}).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        return head.encode() + body


class Connection(asyncio.Protocol):
    """One client's kept-alive connection: each request answered when it has arrived whole."""

    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._id: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self._id = value.decode()

    def on_message_complete(self) -> None:
        assert self._transport is not None
        if self._parser.get_method() == b"GET":
            self._transport.write(self._arrivals.report())
            return
        self._arrivals.requests += 1
        if self._id is not None:
            self._arrivals.arrived.setdefault(self._id, time.monotonic())
            self._id = None
        self._transport.write(NO_CONTENT)


async def serve(port: int) -> None:
    arrivals = Arrivals()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(arrivals), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
