"""Bounded request bodies, in size and in time, before any of them is parsed.

A body over the size limit is answered 413 (`PAYLOAD_TOO_LARGE`, with `maxBytes`) without reading
the rest: at once when its Content-Length says so, otherwise as soon as the bytes read pass the
limit. A body that has not fully arrived within the body timeout of its request's start is answered
408 (`REQUEST_TIMEOUT`, with `timeoutSeconds`), so a client that sends it a byte at a time cannot
hold a connection. Both answers close the connection: the rest of the body is never read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.graphql.edge.errors import ClientErrorCode
from api.web.graphql_http import request_error_response


def _over(digits: str, limit: int) -> bool:
    """Whether the decimal number `digits` is over `limit`, read however many digits it has (Python
    refuses to read an int of over 4,300 of them, leading zeros included)."""
    significant = digits.lstrip("0")
    return len(significant) > len(str(limit)) or int(significant or "0") > limit


class _BodyRefused(Exception):
    def __init__(self, status_code: int, message: str, code: ClientErrorCode, **extensions: Any) -> None:
        super().__init__(message)
        self.status_code, self.message, self.code, self.extensions = status_code, message, code, extensions


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """ASGI middleware bounding HTTP request bodies to `max_bytes` bytes received within
    `timeout_seconds` of the request's start (its headers complete)."""

    app: ASGIApp
    max_bytes: int
    timeout_seconds: float

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and _over(declared, self.max_bytes):
            await self._refuse(self._too_large(), scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        received = 0
        body_complete = False
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:  # later receives wait for a disconnect, which takes as long as it takes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyRefused(
                    408,
                    f"The request body did not arrive within {self.timeout_seconds:g} s.",
                    ClientErrorCode.REQUEST_TIMEOUT,
                    timeoutSeconds=self.timeout_seconds,
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracked_send)
        except _BodyRefused as refused:
            if response_started:  # nothing sensible is left to say on this connection
                raise
            await self._refuse(refused, scope, receive, send)

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(
            413,
            f"The request body is larger than {self.max_bytes} bytes.",
            ClientErrorCode.PAYLOAD_TOO_LARGE,
            maxBytes=self.max_bytes,
        )

    @staticmethod
    async def _refuse(refused: _BodyRefused, scope: Scope, receive: Receive, send: Send) -> None:
        response = request_error_response(
            refused.message, refused.status_code, refused.code, **refused.extensions
        )
        response.headers["connection"] = "close"
        await response(scope, receive, send)
