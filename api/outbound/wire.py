"""POSTs to one origin over kept-alive HTTP/1.1 connections, written as bytes: webhook deliveries.

A webhook endpoint that takes every event gets several requests per saga, sent from the process and
the cores the sagas run on. httpx and aiohttp build request and response objects, header multidicts
and URL objects for each; here a request is one bytes object (the head made once per origin, the
headers that change and the body appended) and the answer is parsed by httptools (llhttp, as the
server side's is), of which only the status is kept. At 16 requests in flight on loopback that is
0.044 ms of CPU per POST, against aiohttp's 0.098 ms and 0.31 ms through httpx's API over aiohttp
(3,000 POSTs of a 230-byte event each, api/outbound/http.py being the last).

Redirects are not followed (a 3xx is an answer like any other), no proxy is used, and the answer's
body is read only to be discarded. Connections go to an address `GuardedResolver` allowed in the same
lookup, so a name cannot pass the check and then connect elsewhere; https URLs use TLS with the
system's trust store.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast
from urllib.parse import quote, urlsplit

import httptools

from api.outbound import USER_AGENT

if TYPE_CHECKING:
    from api.outbound.resolver import GuardedResolver

# What may stay as it is in a request target: RFC 3986's unreserved and reserved characters, and `%`
# (the URL's own escapes); anything else (spaces, other text) is percent-encoded.
_TARGET_SAFE = "/?[]@!$&'()*+,;=:%-._~"


class ConnectTimeout(TimeoutError):
    """No connection within the origin's connect timeout (the host's lookup included), which ended
    before the request's own timeout: the receiver's address did not accept a connection."""


class Origin:
    """Sends POSTs to `url`'s scheme, host and port, at its path, reusing connections that the
    receiver keeps open. As many connections are opened as requests are in flight at once; the owner
    bounds that. `close` closes those idle; those in use close as their requests end or are cancelled."""

    def __init__(self, url: str, resolver: GuardedResolver, connect_timeout: float) -> None:
        parts = urlsplit(url)
        self.url = url
        self._host = (parts.hostname or "").encode("idna").decode()
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._resolver = resolver
        self._connect_timeout = connect_timeout
        # The URL's `host[:port]` as given, the host's IDNA form, IPv6 addresses bracketed.
        authority = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None:
            authority += f":{parts.port}"
        target = quote(parts.path or "/", safe=_TARGET_SAFE) + (
            f"?{quote(parts.query, safe=_TARGET_SAFE)}" if parts.query else ""
        )
        self._head = (
            f"POST {target} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: {USER_AGENT}\r\n"
            "content-type: application/json\r\n"
        ).encode()
        self._idle: list[_Connection] = []
        # The connections with a request out, and when (the loop's clock) each must have its answer.
        self._waiting: dict[_Connection, float] = {}
        self._alarm: asyncio.TimerHandle | None = None  # set for the earliest of those deadlines

    async def post(self, body: bytes, headers: Mapping[str, str], total_timeout: float) -> int:
        """POST `body` (JSON) with `headers` (names and values in ASCII, no line breaks), connecting,
        sending and reading the whole answer within `total_timeout` seconds; answers its status code.

        Raises TimeoutError past it (ConnectTimeout, one of them, when no connection was made within
        the connect timeout, which ended first), and OSError (ConnectionError, ssl.SSLError, a name
        that does not resolve to an allowed address) when the connection fails or the answer is not
        HTTP/1.x: for the caller, both mean the receiver may or may not have taken it. A request that
        finds a reused connection closed before any answer came is sent again once on a new one."""
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = b"%b%bcontent-length: %d\r\n\r\n%b" % (self._head, fields.encode(), len(body), body)
        deadline = asyncio.get_running_loop().time() + total_timeout
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue  # the receiver closed it while it was idle
            try:
                return await self._exchange(connection, request, deadline)
            except ConnectionError:
                if connection.answered:
                    raise
                # Most likely the receiver closed an idle connection as the request went out on
                # it (its keep-alive ran out), so the request goes on another; a receiver that
                # did take it sees the same webhook-id again, as after any resend.
        return await self._exchange(await self._connect(deadline), request, deadline)

    async def close(self) -> None:
        """Close the idle connections (a request in flight keeps its own until it ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float) -> int:
        self._watch(connection, deadline)
        try:
            status = await connection.exchange(request)
        except BaseException:
            connection.close()  # cut off mid-answer (a timeout, a cancellation): not reusable
            raise
        finally:
            self._waiting.pop(connection, None)
        if connection.reusable:
            self._idle.append(connection)
        return status

    def _watch(self, connection: _Connection, deadline: float) -> None:
        """Have `connection`'s exchange fail with TimeoutError once `deadline` (the loop's clock)
        passes. One timer serves every exchange, set for the earliest deadline: a timer per request
        (asyncio.timeout) cost about as much CPU as the rest of the request's bookkeeping."""
        self._waiting[connection] = deadline
        if self._alarm is None or deadline < self._alarm.when():
            self._set_alarm(deadline)

    def _set_alarm(self, when: float) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        """Fail the exchanges past their deadline; set the alarm for the next deadline, if any."""
        self._alarm = None
        now = asyncio.get_running_loop().time()
        for connection, deadline in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[connection]
                connection.expire()
        if self._waiting:
            self._set_alarm(min(self._waiting.values()))

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connect_by = loop.time() + self._connect_timeout
        try:
            async with asyncio.timeout_at(min(connect_by, deadline)):
                found = await self._resolver.resolve(self._host, self._port, socket.AF_UNSPEC)
                failure: OSError | None = None
                for address in found:
                    try:
                        _, connection = await loop.create_connection(
                            _Connection,
                            address["host"],
                            address["port"],
                            ssl=self._tls,
                            server_hostname=self._host if self._tls is not None else None,
                        )
                        return connection
                    except OSError as error:
                        failure = error
        except TimeoutError:
            if connect_by < deadline:  # the connect timeout ran out, not the request's
                raise ConnectTimeout(f"no connection within {self._connect_timeout:g} s") from None
            raise
        assert failure is not None  # the resolver answers at least one address, or raises
        raise failure


class _Connection(asyncio.Protocol):
    """One connection carrying one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[int] | None = None
        self._status: int | None = None
        self.answered = False  # a byte of the current request's answer arrived
        self.reusable = False  # its last answer ended and the receiver keeps it open
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport's subclasses, hence no isinstance).
        self._transport = cast(asyncio.Transport, transport)

    async def exchange(self, request: bytes) -> int:
        self._status, self.answered, self.reusable = None, False, False
        if self.closed or self._transport is None:
            raise ConnectionResetError("the connection was closed")
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._answer
        finally:
            self._answer = None

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._settle(ConnectionAbortedError(f"the answer is not HTTP/1.x: {error}"))
            self.close()

    # httptools' callbacks, in the order an answer arrives.

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_message_complete(self) -> None:
        if self._status is not None and self._status < 200:
            self._status = None  # an interim answer (100 Continue): the final one follows
            return
        self.reusable = self._parser.should_keep_alive()
        if not self.reusable:
            self.close()
        self._settle(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.reusable = True, False
        if self._status is not None:
            self._settle(self._status)  # an answer whose body ends with the connection: it is whole
        else:
            reason = f": {exc}" if exc is not None else ""
            self._settle(ConnectionResetError(f"the connection closed before an answer{reason}"))

    def expire(self) -> None:
        """The answer did not come in time: the exchange fails with TimeoutError, and the
        connection, whose answer may still be on its way, closes."""
        self._settle(TimeoutError("no answer in time"))
        self.close()

    def close(self) -> None:
        self.closed, self.reusable = True, False
        if self._transport is not None:
            self._transport.close()

    def _settle(self, outcome: int | None | BaseException) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        if isinstance(outcome, BaseException):
            answer.set_exception(outcome)
        elif outcome is None:
            answer.set_exception(ConnectionAbortedError("the answer has no status"))
        else:
            answer.set_result(outcome)
