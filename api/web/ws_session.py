"""A WebSocket lasts as long as the token it was opened with, unless the client renews it.

The token of `connection_init` is good until its `exp` plus the configured leeway
(`api/access/auth.py`). At that moment the socket is closed with 4403 (Forbidden), whether or not the
client is sending anything: each socket has a timer. Every operation running on it is stopped first,
and a message that arrives once that moment has passed (a `subscribe`, a `ping`, any) runs nothing
and closes the socket the same way, so no operation slips in between the moment and the timer.

A client keeps its socket, and its subscriptions, by renewing before then: a `ping` whose payload
carries a fresh token in a shape `connection_init` takes (`{"authorization": "Bearer <token>"}`, ...).
It is verified as at `connection_init`, must name the same principal (subject and roles: whom a socket
acts for never changes while it is open), and its end replaces the old one; the `pong` then says the
socket's end as `{"expiresAt": "<ISO 8601, UTC>"}` (null: never). A renewal token that is not valid,
or is someone else's, closes the socket with 4403: the old token is not kept on. While the identity
provider's keys cannot be fetched, a renewal cannot be checked: the socket keeps its old end, which
the `pong` says, and the client may ping again.

Sockets in development mode, and sockets opened without a token (whose operations are all refused),
have no end.

A socket also ends when its client does not read. Every message waits until the socket can take it:
the server's buffers for one socket hold at most the transport's (64 KiB past the operating system's
own) and one message per operation. A message that has waited `send_timeout` (settings, 10 s) closes
the socket with 1013 (Try Again Later): its operations are stopped, and its subscriptions hold no
notices while it is not read, instead of each keeping up to the hub's bound (api/live/hub.py). The close
frame follows what was sent before it, once the client reads again; a client that subscribes again
receives what commits from then on.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    PingMessage,
)

from api.access.auth import Authenticator, KeysUnavailable, NotAuthenticated, bearer_of
from api.web.graphql_ws import StrictTransportWS, close_reason

FORBIDDEN = 4403
EXPIRED = "Forbidden: the token has expired"
TRY_AGAIN_LATER = 1013
NOT_READING = "Try Again Later: the client did not read what was sent"


class SessionTransportWS(StrictTransportWS):
    """graphql-transport-ws, strictly, on a socket that ends when its token does. `on_ws_connect`
    leaves the token's end in the context as `valid_until` (a UTC datetime, or None: never)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._valid_until: datetime | None = None
        self._timer: asyncio.Task[None] | None = None
        self._ended = False
        self._ending: asyncio.Task[None] | None = None

    async def handle_message(self, message: Message) -> None:
        if self._ended:
            return  # on its way when the socket closed: it runs nothing
        if self._expired():
            await self._end(EXPIRED)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        acknowledged = self.connection_acknowledged
        await super().handle_connection_init(message)
        if self.connection_acknowledged and not acknowledged:
            self._end_at(self.context.get("valid_until"))

    async def handle_ping(self, message: PingMessage) -> None:
        authorization = bearer_of(message.get("payload") or {})
        if authorization is None or not self.connection_acknowledged:
            await super().handle_ping(message)
            return
        authenticator: Authenticator = self.context["service"].authenticator
        try:
            renewed = await authenticator.verify(authorization)
        except KeysUnavailable:
            renewed = None
        except NotAuthenticated as refusal:
            await self._end(f"Forbidden: the renewal token: {refusal}")
            return
        if self._ended:
            return  # the old token ran out while the new one was checked
        if renewed is not None:
            if renewed.principal != self.context["identity"]:
                await self._end("Forbidden: the renewal token is for another principal")
                return
            self._end_at(renewed.valid_until)
        expires_at = None if self._valid_until is None else self._valid_until.isoformat()
        await self.send_message({"type": "pong", "payload": {"expiresAt": expires_at}})

    async def send_message(self, message: Message) -> None:
        try:
            async with asyncio.timeout(self.context["service"].settings.send_timeout.total_seconds()):
                await super().send_message(message)
        except TimeoutError:
            if self._ending is None:
                # A task of its own: stopping the operations cancels the one that is sending this.
                self._ending = asyncio.create_task(self._end(NOT_READING, TRY_AGAIN_LATER))

    async def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with suppress(asyncio.CancelledError):
                await self._timer
        if self._ending is not None:
            self._ending.cancel()
            with suppress(Exception, asyncio.CancelledError):  # the client left before the close
                await self._ending
        await super().shutdown()

    def _expired(self) -> bool:
        return self._valid_until is not None and datetime.now(UTC) >= self._valid_until

    def _end_at(self, valid_until: datetime | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._valid_until = valid_until
        if valid_until is not None:
            self._timer = asyncio.create_task(self._end_when_expired(valid_until))

    async def _end_when_expired(self, valid_until: datetime) -> None:
        try:
            # The loop's clock is not the wall's, which no event tells of: sleep again if it wakes early.
            while (left := (valid_until - datetime.now(UTC)).total_seconds()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(left)
            await self._end(EXPIRED)
        except Exception as error:  # noqa: BLE001 - reported as strawberry reports its own timers'
            await self.handle_task_exception(error)

    async def _end(self, reason: str, code: int = FORBIDDEN) -> None:
        """Stop every operation of the socket, then close it with `code` and `reason`."""
        if self._ended:
            return
        self._ended = True
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self.websocket.close(code=code, reason=close_reason(reason))
