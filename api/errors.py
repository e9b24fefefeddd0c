"""Errors a client sees as GraphQL errors, each with an `extensions.code` that tells it what to do.

Expected failures of a whole operation (bad arguments, no or bad credentials, a missing permission,
a limit hit, an overloaded service) are raised as `client_error(...)`; failures of one input inside
a mutation stay userErrors in the payload. Anything else that escapes a resolver is unexpected and is
masked at the edge with an error id.
"""

from __future__ import annotations

import enum
from typing import Any

from graphql import GraphQLError


class ClientErrorCode(enum.StrEnum):
    """The codes of `extensions.code`, in the words GraphQL servers commonly use."""

    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # the document is not GraphQL: fix the query
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # it does not fit the schema: fix the query
    BAD_USER_INPUT = "BAD_USER_INPUT"  # an argument's value is refused: change it
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no valid credentials: sign in (again)
    FORBIDDEN = "FORBIDDEN"  # the credentials lack the permission: ask for it, do not retry
    RATE_LIMITED = "RATE_LIMITED"  # too many requests: retry after `retryAfterSeconds`
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # overloaded or starting: retry after `retryAfterSeconds`
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"  # a fault of ours, logged under `errorId`
    BAD_REQUEST = "BAD_REQUEST"  # not a well-formed GraphQL request (body, operationName): fix the request
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # the body is over `maxBytes`: send a smaller request
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"  # the body did not arrive within `timeoutSeconds`: send it again


def client_error(message: str, code: ClientErrorCode, **extensions: Any) -> GraphQLError:
    """A GraphQL error for the client, `message` shown as it is, with `code` and `extensions`."""
    return GraphQLError(message, extensions={"code": code.value, **extensions})


def is_client_error(error: GraphQLError) -> bool:
    """Whether `error` was made for the client (it carries a code), so it is shown, not masked."""
    return bool(error.extensions and "code" in error.extensions)
