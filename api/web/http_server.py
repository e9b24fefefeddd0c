"""The HTTP server around the app: uvicorn, configured so that no client holds a connection for ever,
and announcing where it listens only once it does.

uvicorn bounds the idle time between a connection's requests (`Settings.keep_alive_timeout`, 75 s,
longer than many clients' pools keep an idle connection, so that they close it first) but neither
the time a request's headers take to arrive nor their size; `HeaderDeadline` adds both. Bodies are
bounded by `api.web.request_limits.BodyLimits`, WebSocket messages by the same size limit.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.graphql.errors import ClientErrorCode, client_error
from api.settings import Settings

# The most a request line and its headers may hold, in bytes: more than any client sends (a token,
# cookies), and far less than what makes the work done on a header's value (httptools joining one
# sent in many pieces, the standard library splitting a Content-Type's parameters, both growing
# with the square of its length) hold the event loop. 32 KiB, as nginx's four header buffers.
MAX_HEADER_BYTES = 32 * 1024
# How long a refused connection's further bytes are read and dropped before it is closed.
LINGER_SECONDS = 2.0


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), closing a connection whose request headers have not
    all arrived within `header_timeout` seconds of the connection opening or of the request's first
    byte, so a client that sends nothing, or its headers a byte at a time, cannot hold it; and
    answering 431 (`HEADERS_TOO_LARGE`, with `maxBytes`), then closing, a request whose line and
    headers hold more than MAX_HEADER_BYTES, before any of it is handed to the application."""

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0  # of the request line and headers received so far
    _header_tail = b""  # the last bytes of them received, where the blank line may have begun
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # read and dropped until the client closes, so that it reads the answer
            return
        # Counted before the parser is fed: httptools keeps what it was fed of an unfinished header,
        # and joins each piece to it.
        if self._header_deadline is not None:  # the headers are still arriving
            self._header_bytes += self._header_part(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                message = f"The request line and headers hold more than {MAX_HEADER_BYTES} bytes."
                self._refuse(431, message, ClientErrorCode.HEADERS_TOO_LARGE, maxBytes=MAX_HEADER_BYTES)
                return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # httptools' refusal of what is not HTTP/1.1 (a malformed line, an unreadable
        # Content-Length), answered in the GraphQL shape as the application's refusals are.
        self._refuse(400, msg, ClientErrorCode.BAD_REQUEST)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # a new request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self._header_bytes, self._header_tail = 0, b""

    def _headers_timed_out(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _header_part(self, data: bytes) -> int:
        """How many of `data`'s bytes belong to the request line and headers: those up to the blank
        line that ends them, which may begin in the bytes received before."""
        joined = self._header_tail + data[:3]
        end = joined.find(b"\r\n\r\n")
        if end >= 0:
            return end + 4 - len(self._header_tail)
        self._header_tail = (self._header_tail + data)[-3:]
        end = data.find(b"\r\n\r\n")
        return len(data) if end < 0 else end + 4

    def _refuse(self, status: int, message: str, code: ClientErrorCode, **extensions: Any) -> None:
        """Answers `status` with `message` and `code`, and closes: the writing side at once; the
        reading side drops what still arrives for LINGER_SECONDS, since a socket closed with bytes
        unread is reset, and the client might lose the answer."""
        self._disarm()
        if self.transport.is_closing():
            return
        self._refused = True
        error = client_error(message, code, **extensions)
        body = json.dumps({"errors": [error.formatted]}).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def server_config(app: ASGIApp, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` on `host:port` (0: any free port) with `settings`'
    limits (`connection_limits`) and header timeout."""
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": settings.header_timeout})
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", http=protocol, **connection_limits(settings)
    )


def connection_limits(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for `settings`' bounds on a connection, the same in one process and in
    `serve --workers N`: the idle time kept between requests (seconds) and the largest WebSocket
    message (bytes, the body size limit). uvicorn types the keep-alive an int; it uses it as
    `call_later`'s delay, which any number of seconds is."""
    return {"timeout_keep_alive": settings.keep_alive_timeout, "ws_max_size": settings.max_body_bytes}


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls `on_listening` with its base URL (the port it was given, when
    asked for port 0) once its socket is bound, and never if binding fails."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[str], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._on_listening(base_url(self.servers[0].sockets[0]))


def base_url(bound: socket.socket) -> str:
    """The http URL of a bound listening socket: its address and the port it holds (the one the
    system gave, when port 0 was asked for)."""
    host, port = bound.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
