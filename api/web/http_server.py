"""The HTTP server around the app: uvicorn, configured so that no client holds a connection for ever,
and announcing where it listens only once it does.

uvicorn bounds the idle time between a connection's requests (`Settings.keep_alive_timeout`, 75 s,
longer than many clients' pools keep an idle connection, so that they close it first) but not the
time a request's headers take to arrive; `HeaderDeadline` adds that. Bodies are bounded by
`api.web.request_limits.BodyLimits`, WebSocket messages by the same size limit.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.settings import Settings


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), closing a connection whose request headers have not
    all arrived within `header_timeout` seconds of the connection opening or of the request's first
    byte, so a client that sends nothing, or its headers a byte at a time, cannot hold it."""

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

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

    def _headers_timed_out(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


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
