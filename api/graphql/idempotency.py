"""Idempotency keys of the writes other than placeOrder (receiveStock, adjustStock,
dispatchShipment): scoped to the caller as placeOrder's are, and checked as its are."""

from __future__ import annotations

from strawberry.types import Info

from api.graphql.orders import own_key
from api.graphql.types import principal
from domain.model.problems import MAX_TEXT, Problem, ProblemCode, check_text
from domain.ports import KeyedRequest

KEY_DESCRIPTION = (
    "Repeat a request with the same key to get the first one's answer, never a second effect; the same "
    "key with a different request is refused (IDEMPOTENCY_KEY_REUSED). Keys are the caller's own, and "
    "bound only when the request takes effect."
)


def check_key(idempotency_key: str | None) -> list[Problem]:
    return [] if idempotency_key is None else check_text(idempotency_key, "idempotencyKey", MAX_TEXT)


def keyed(info: Info, idempotency_key: str | None, operation: str, **fields: object) -> KeyedRequest | None:
    """The request `operation` with `fields` (its input, the key left out) under the caller's own
    `idempotency_key`; None without a key."""
    if idempotency_key is None:
        return None
    return KeyedRequest.of(own_key(principal(info), idempotency_key), operation, **fields)


KEY_REUSED = Problem(
    ProblemCode.IDEMPOTENCY_KEY_REUSED,
    "idempotencyKey",
    "this idempotency key was already used for a different request",
)
