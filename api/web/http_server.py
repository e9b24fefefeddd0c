"""The HTTP server around the app: uvicorn, configured so that no client holds a connection for ever,
and announcing where it listens only once it does.

uvicorn bounds the idle time between a connection's requests (`Settings.keep_alive_timeout`, 75 s,
longer than many clients' pools keep an idle connection, so that they close it first) but neither
the time a request's headers take to arrive nor their size; `HeaderDeadline` adds both. Bodies are
bounded by `api.web.request_limits.BodyLimits`, WebSocket messages by the same size limit.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.graphql.edge.errors import ClientErrorCode
from api.settings import Settings
from api.web.graphql_http import request_error_body

# The most a request line and its headers may hold, in bytes: more than any client sends (a token,
# cookies), and far less than what makes the work done on a header's value (the standard library
# splitting a Content-Type's parameters, strawberry parsing every request's, grows with the square
# of its length) hold the event loop. 32 KiB, as nginx's four header buffers.
MAX_HEADER_BYTES = 32 * 1024
# The most one read of a socket delivers (uvloop's and asyncio's, about): what httptools may be fed of
# one header (or trailer) before a callback tells of it, since it calls back only for a header it
# has whole, and joins the pieces of one that spans reads, at a cost growing with the square of its
# length. Bytes fed with no callback past the bound and one read are refused: the read in which the
# parser last called back is not counted, so httptools holds at most the bound and two reads.
READ_BYTES = 256 * 1024
# How long a refused connection's further bytes are read and dropped before it is closed.
LINGER_SECONDS = 2.0


class _HeadersTooLarge(Exception):
    """Raised from a parser callback to stop the parse; httptools hands it back as the context of
    its HttpParserCallbackError."""


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), closing a connection whose request headers have not
    all arrived within `header_timeout` seconds of the connection opening or of the request's first
    byte, so a client that sends nothing, or its headers a byte at a time, cannot hold it; and
    answering 431 (`HEADERS_TOO_LARGE`, with `maxBytes`), then closing, a request whose line,
    headers and trailers hold more than MAX_HEADER_BYTES, before any of it is handed to the
    application: every request on a connection, kept alive or pipelined alike, the answers to the
    requests before it sent first."""

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None
    _unparsed = 0  # bytes fed to the parser since it last called back
    _header_bytes = 0  # of the request's line, headers and trailers parsed, exactly
    _in_body = False  # between a request's headers and its end
    _refused = False
    _answer_after_the_others: bytes | None = None  # a refusal waiting for the answers before it
    _running: Any = None  # the request being answered (uvicorn's RequestResponseCycle)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, but for the size bound and this refusal.
        if self._refused:  # read and dropped until the client closes, so that it reads the answer
            return
        self._unparsed += len(data)
        if self._unparsed > MAX_HEADER_BYTES + READ_BYTES:
            self._refuse_headers()
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if not isinstance(error.__context__, _HeadersTooLarge):
                self._invalid()
                return
            self._refuse_headers()
        except httptools.HttpParserError:
            self._invalid()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        self._unparsed = self._header_bytes = 0
        super().on_message_begin()
        if self._header_deadline is None:  # a new request on a kept-alive connection
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:  # a trailer's too
        self._count(name, b": ", value, b"\r\n")  # as sent
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._unparsed = 0
        self._disarm()
        self._in_body = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._unparsed = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._unparsed, self._in_body = 0, False
        super().on_message_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._answer_after_the_others is not None and self._others_answered():
            self._answer_and_close(self._answer_after_the_others)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _count(self, *parts: bytes) -> None:
        self._unparsed = 0
        self._header_bytes += sum(map(len, parts))
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _HeadersTooLarge

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

    def _invalid(self) -> None:
        # httptools' refusal of what is not HTTP/1.1 (a malformed line, an unreadable
        # Content-Length), answered in the GraphQL shape as the application's refusals are.
        message = "Invalid HTTP request received."
        self.logger.warning(message)
        self._refuse(400, message, ClientErrorCode.BAD_REQUEST)

    def _refuse_headers(self) -> None:
        message = f"The request line and headers hold more than {MAX_HEADER_BYTES} bytes."
        self._refuse(431, message, ClientErrorCode.HEADERS_TOO_LARGE, maxBytes=MAX_HEADER_BYTES)

    def _refuse(self, status: int, message: str, code: ClientErrorCode, **extensions: Any) -> None:
        """Answers `status` with `message` and `code`, and closes. The requests before the refused
        one (pipelined) are answered first; a refused request already being read (its trailers, or
        a body that is not HTTP) is cut off, and answered unless its answer has begun."""
        self._disarm()
        if self.transport.is_closing():
            return
        self._refused = True  # nothing more is parsed
        body = request_error_body(message, code, **extensions).encode()
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\nconnection: close\r\n")
        head.append(f"content-length: {len(body)}\r\n\r\n".encode())
        answer = b"".join(head) + body
        refused = self.cycle
        if self._in_body and refused is not None and not refused.response_complete:
            if self.pipeline and self.pipeline[0][0] is refused:
                self.pipeline.popleft()  # queued behind others: it never runs
            else:  # being answered: cut off, and answered unless its answer has begun
                refused.disconnected = True
                refused.message_event.set()
                self._answer_and_close(b"" if refused.response_started else answer)
                return
        if self._others_answered():
            self._answer_and_close(answer)
        else:
            self._answer_after_the_others = answer

    def _others_answered(self) -> bool:
        return not self.pipeline and (self._running is None or self._running.response_complete)

    def _answer_and_close(self, answer: bytes) -> None:
        """Writes `answer`, then closes: the writing side at once; the reading side drops what still
        arrives for LINGER_SECONDS, since a socket closed with bytes unread is reset, and the client
        might lose the answer."""
        self._answer_after_the_others = None
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        # Read (and drop) on: a body's flow control may have paused reading, and the keep-alive
        # timer, armed as the last answer ended, must not close it before the linger does.
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def server_config(app: ASGIApp, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` on `host:port` (0: any free port) with `settings`'
    limits (`server_options`) and header timeout."""
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": settings.header_timeout})
    return uvicorn.Config(app, host=host, port=port, http=protocol, **server_options(settings))


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options, the same in one process and in `serve --workers N`: `settings`' bounds on
    a connection, the idle time kept between requests (seconds) and the largest WebSocket message
    (bytes, the body size limit); its own log at WARNING, and no access log: for its lines (INFO),
    which that level drops, uvicorn read each request's client address and path and called the
    logger. uvicorn types the keep-alive an int; it uses it as `call_later`'s delay, which any
    number of seconds is."""
    return {
        "timeout_keep_alive": settings.keep_alive_timeout,
        "ws_max_size": settings.max_body_bytes,
        "log_level": "warning",
        "access_log": False,
    }


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
