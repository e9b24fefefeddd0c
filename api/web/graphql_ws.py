"""graphql-transport-ws as its reference server (the `graphql-ws` package) speaks it, on top of
strawberry's handler.

- A message whose shape the protocol does not allow closes the socket with 4400 and the reason, as
  the reference server's `validateMessage` does: a message that is not an object or has no string
  `type`; a `connection_init`, `ping` or `pong` whose `payload` is neither absent, null nor an
  object; a `subscribe` whose `id` is not a non-empty string, whose `payload` is not an object,
  whose `query` is not a string, or whose `variables`, `operationName` or `extensions` have the
  wrong type. strawberry alone lets most of these through, or drops the socket (1006) on `null`.
- A `subscribe` whose document does not parse or validate, or names no operation it holds, is
  answered with an `error` message carrying the errors (the protocol's "operation execution errors
  before execution starts"), never with a closed socket or a bare `complete`.
- A `subscribe` past the socket's limit of operations running at once (strawberry's, 100) is
  answered with an `error` message coded TOO_MANY_OPERATIONS, with `maximum`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage

from api.graphql.edge.document_limits import too_long
from api.graphql.edge.errors import ClientErrorCode, client_error

# RFC 6455 leaves 123 bytes of a close frame for the reason.
MAX_CLOSE_REASON_BYTES = 123

_OBJECT_PAYLOAD = frozenset({"connection_init", "connection_ack", "ping", "pong"})
_NAMES = {dict: "an object", str: "a string"}


def protocol_violation(message: Any) -> str | None:
    """Why `message` (a decoded JSON value) is not a graphql-transport-ws message, or None if it
    is one; the checks of the reference implementation's `validateMessage`."""
    if not isinstance(message, dict):
        return f"Message is expected to be an object, but got {_json_type(message)}"
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return "Message is missing a string 'type' property"
    if kind in _OBJECT_PAYLOAD:
        if not _absent_or(message.get("payload"), dict):
            return f"\"{kind}\" message expects the 'payload' property to be an object or missing"
    elif kind in ("subscribe", "complete"):
        id = message.get("id")
        if not isinstance(id, str) or not id:
            return f"\"{kind}\" message requires a non-empty string 'id' property"
        if kind == "subscribe":
            return _subscribe_payload_violation(message.get("payload"))
    return None  # unknown types are strawberry's to refuse, with the same close code


def _subscribe_payload_violation(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "\"subscribe\" message expects the 'payload' property to be an object"
    if not isinstance(payload.get("query"), str):
        return "\"subscribe\" message requires 'payload.query' to be a string"
    for name, kind in (("variables", dict), ("operationName", str), ("extensions", dict)):
        if not _absent_or(payload.get(name), kind):
            return f"\"subscribe\" message expects 'payload.{name}' to be {_NAMES[kind]}, null or missing"
    return None


def _absent_or(value: Any, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def close_reason(text: str) -> str:
    """`text` cut to what a close frame can carry, on a character boundary."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class StrictTransportWS(BaseGraphQLTransportWSHandler[dict[str, Any], None]):
    async def handle_message(self, message: Message) -> None:
        violation = protocol_violation(message)
        if violation is not None:
            await self.handle_invalid_message(violation)
            return
        await super().handle_message(message)

    async def handle_invalid_message(self, error_message: str) -> None:
        await super().handle_invalid_message(close_reason(error_message))

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # A turn of the event loop between subscribes: a burst of them, read from the socket at once,
        # would otherwise start every operation (a parse and a validation each) in one turn.
        await asyncio.sleep(0)
        # strawberry closes the socket for an operation before the acknowledgement (4401) or under an
        # id in use (4409); past those, a document too long or one operation too many is refused
        # here, with a code (strawberry's own refusal past its limit carries none).
        limit = self.max_subscriptions_per_connection
        if self.connection_acknowledged and message["id"] not in self.operations:
            refusal: GraphQLError | None = None
            if (too_long_text := too_long(message["payload"]["query"])) is not None:
                refusal = client_error(too_long_text, ClientErrorCode.BAD_REQUEST)
            elif limit is not None and len(self.operations) >= limit:
                refusal = client_error(
                    f"This socket runs {limit} operations already: complete one first, or open another "
                    "socket",
                    ClientErrorCode.TOO_MANY_OPERATIONS,
                    maximum=limit,
                )
            if refusal is not None:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refusal.formatted]}
                )
                return
        await super().handle_subscribe(message)

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        # strawberry closes the socket for a syntax error or an unknown operation name; they are
        # errors of this operation alone, which the protocol answers with an `error` message.
        return None
