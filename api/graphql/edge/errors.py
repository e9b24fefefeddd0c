"""Errors a client sees as GraphQL errors, each with an `extensions.code` that tells it what to do.

Expected failures of a whole operation (bad arguments, no or bad credentials, a missing permission,
a limit hit, an overloaded service) are raised as `client_error(...)`; failures of one input inside
a mutation stay userErrors in the payload. Anything else that escapes a resolver is unexpected and is
masked at the edge with an error id (`report`, which the schema calls for every error).
"""

from __future__ import annotations

import enum
import logging
import uuid
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from graphql.validation.validate import ValidationAbortedError
from strawberry.schema.exceptions import CannotGetOperationTypeError

from domain.ports import OutcomeUnknown, StillContended
from persistence.database import brief, is_transient

log = logging.getLogger("ordersaga.api")

# What a client reads in place of an unexpected error; the details are in the log, under the error id.
MASKED_MESSAGE = "Internal server error; quote the errorId when reporting it"
# What a client reads when the database was busy or away; it may send the same request again after
# RETRY_AFTER_SECONDS.
BUSY_MESSAGE = "The service is busy; send the request again shortly"
RETRY_AFTER_SECONDS = 1
# What a client reads when the connection was lost as its write committed: it may have taken effect.
UNKNOWN_OUTCOME_MESSAGE = (
    "The outcome is unknown: the database connection was lost while the change was committed, so it "
    "may have taken effect. A request that takes an idempotencyKey may be sent again with the same key "
    "(it then takes effect at most once); otherwise read back whether it took effect before sending it "
    "again (an intervention sent again is refused and changes nothing)"
)

# What a client reads when a change was made but reading the answer it asked for failed (a transient
# database error below a mutation's root field, raised after the mutation's resolver returned): the
# change took effect, which "busy, send it again" would deny.
ANSWER_LOST_MESSAGE = (
    "The change was made, but its answer could not be read: read back what it changed before sending "
    "it again (sent again with the same idempotencyKey, it changes nothing more)"
)
# What a client reads when a mutation's root field was not run (the database busy) after the
# operation's earlier root fields ran: their changes may have been made, which "busy, send it again"
# would deny for the request as a whole.
EARLIER_FIELDS_MESSAGE = (
    "This field was not run, as the service was busy, but the fields before it in this mutation were "
    "and may have made their changes: read back what they change before sending the request again "
    "(fields sent again with the same idempotencyKey change nothing more)"
)


class ClientErrorCode(enum.StrEnum):
    """The codes of `extensions.code`, in the words GraphQL servers commonly use."""

    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # the document is not GraphQL: fix the query
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # it does not fit the schema: fix the query
    # it asks for more work than one request may do (`extensions.limit` says which): simplify or split it
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    BAD_USER_INPUT = "BAD_USER_INPUT"  # an argument's value is refused: change it
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no valid credentials: sign in (again)
    FORBIDDEN = "FORBIDDEN"  # the credentials lack the permission: ask for it, do not retry
    RATE_LIMITED = "RATE_LIMITED"  # too many requests: retry after `retryAfterSeconds`
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  # overloaded or starting: retry after `retryAfterSeconds`
    # the write may have taken effect (or did, and its answer could not be read): retry with the same
    # idempotency key, or check first
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"  # a fault of ours, logged under `errorId`
    # not a well-formed GraphQL request (its body, operationName, a subscription over HTTP): fix it
    BAD_REQUEST = "BAD_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # the body is over `maxBytes`: send a smaller request
    # the request line and headers are over `maxBytes` (HTTP 431): send fewer or shorter headers
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    # a WebSocket already runs its `maximum` of operations: complete one first, or open another socket
    TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"  # the body did not arrive within `timeoutSeconds`: send it again


def client_error(message: str, code: ClientErrorCode, **extensions: Any) -> GraphQLError:
    """A GraphQL error for the client, `message` shown as it is, with `code` and `extensions`."""
    return GraphQLError(message, extensions={"code": code.value, **extensions})


def is_client_error(error: GraphQLError) -> bool:
    """Whether `error` was made for the client (it carries a code), so it is shown, not masked."""
    return bool(error.extensions and "code" in error.extensions)


def _refused_value(error: GraphQLError) -> bool:
    """graphql-core's own refusal of a value the client sent: a variable's, made before execution (it
    has no path, and no exception of ours behind it), or an argument's, made as its field is executed
    (raised where graphql-core coerces a field's arguments): a null variable for an input field that is not
    nullable but has a default passes validation, and is refused only there."""
    original = error.original_error
    if error.path is None and (original is None or isinstance(original, GraphQLError)):
        return True
    return isinstance(original, GraphQLError) and _raised_by(original, *_COERCES_ARGUMENTS)


# Where graphql-core refuses an argument's value as its field executes: `coerce_argument` and the
# handler it passes the value's validation (not the one for a default the schema holds, which is
# the schema's fault, not the client's).
_COERCES_ARGUMENTS = ("graphql.execution.values", frozenset({"coerce_argument", "on_argument_value_error"}))


def _raised_by(error: BaseException, module: str, functions: frozenset[str]) -> bool:
    """Whether `error` was raised by one of `functions` of `module` (the innermost frame of its
    traceback)."""
    frames = error.__traceback__
    if frames is None:
        return False
    while frames.tb_next is not None:
        frames = frames.tb_next
    frame = frames.tb_frame
    return frame.f_globals.get("__name__") == module and frame.f_code.co_name in functions


def report(error: GraphQLError, *, change_made: bool = False, after_changes: bool = False) -> None:
    """Log `error` and make it what the client may see, in place (every transport formats the same
    object): an expected error gets its code if it has none and is logged at INFO without a
    traceback; an unexpected one is logged at ERROR with its traceback under a new error id, and
    the client sees only `MASKED_MESSAGE`, the code INTERNAL_SERVER_ERROR and the id. A transient
    database error (`persistence.database.is_transient`: no connection free within the pool's
    timeout, a connection lost or refused, a server full or shutting down, a lock or statement
    timeout, a deadlock), or work that met a conflict on every attempt, is the service being busy:
    SERVICE_UNAVAILABLE with `retryAfterSeconds`, logged at WARNING. A connection lost while the
    work committed is OUTCOME_UNKNOWN, logged at WARNING: it may have taken effect. So is a transient
    error met answering a `change_made` (the mutation's resolver returned: its change, if any, is
    committed), with ANSWER_LOST_MESSAGE, and one met by a mutation's root field `after_changes`
    (earlier root fields of the operation ran), with EARLIER_FIELDS_MESSAGE."""
    if not is_client_error(error):
        if isinstance(error, GraphQLSyntaxError) or isinstance(error.original_error, GraphQLSyntaxError):
            code = ClientErrorCode.GRAPHQL_PARSE_FAILED
        elif isinstance(error.original_error, CannotGetOperationTypeError):  # no such operationName
            code = ClientErrorCode.BAD_REQUEST
        elif _refused_value(error):
            code = ClientErrorCode.BAD_USER_INPUT
        elif isinstance(error.original_error, OutcomeUnknown):
            _outcome_unknown(error, UNKNOWN_OUTCOME_MESSAGE)
            return
        elif isinstance(error.original_error, StillContended) or (
            error.original_error is not None and is_transient(error.original_error)
        ):
            if change_made:
                _outcome_unknown(error, ANSWER_LOST_MESSAGE)
            elif after_changes:
                _outcome_unknown(error, EARLIER_FIELDS_MESSAGE)
            else:
                _retry_later(error)
            return
        else:
            _mask(error)
            return
        error.extensions = {**(error.extensions or {}), "code": code.value}
    assert error.extensions is not None
    log.info("refused %s at %s: %s", error.extensions["code"], error.path or "-", error.message)


def _retry_later(error: GraphQLError) -> None:
    assert error.original_error is not None
    log.warning("busy at %s: %s", error.path or "-", brief(error.original_error))
    error.message = BUSY_MESSAGE
    error.extensions = {
        "code": ClientErrorCode.SERVICE_UNAVAILABLE.value,
        "retryAfterSeconds": RETRY_AFTER_SECONDS,
    }
    error.original_error = None


def _outcome_unknown(error: GraphQLError, message: str) -> None:
    log.warning("outcome unknown at %s: %s", error.path or "-", _reason(error.original_error))
    error.message = message
    error.extensions = {"code": ClientErrorCode.OUTCOME_UNKNOWN.value}
    error.original_error = None


def _reason(error: BaseException | None) -> str:
    """Why, for the log, without a database error's text, which quotes the statement's parameters
    (a webhook secret, say): our own OutcomeUnknown's words and its cause's `brief`, or the error's."""
    if isinstance(error, OutcomeUnknown):
        return str(error) if error.__cause__ is None else f"{error} ({brief(error.__cause__)})"
    return "-" if error is None else brief(error)


def _mask(error: GraphQLError) -> None:
    error_id = str(uuid.uuid4())
    cause = error.original_error or error
    log.error(
        "internal error %s at %s: %s",
        error_id,
        error.path or "-",
        error.message,
        exc_info=(type(cause), cause, cause.__traceback__),
        extra={"error_id": error_id},
    )
    error.message = MASKED_MESSAGE
    error.extensions = {"code": ClientErrorCode.INTERNAL_SERVER_ERROR.value, "errorId": error_id}
    error.original_error = None


# graphql-core's message when it gives up validating: the rule OverlappingFieldsCanBeMerged spent
# its budget, or the document nests fragments past the interpreter's recursion limit.
_GAVE_UP = "Validation aborted."
_TOO_COSTLY_TO_VALIDATE = "The document takes more work to validate than one request may do"


def code_validation_errors(errors: list[GraphQLError] | None) -> None:
    """Codes a document's validation errors GRAPHQL_VALIDATION_FAILED, which cannot be told apart
    from other refusals once validation is over, and graphql-core's giving up QUERY_TOO_COMPLEX; the
    schema's `process_errors` does the rest. Errors already coded keep their code."""
    for error in errors or ():
        if is_client_error(error):
            continue
        code = ClientErrorCode.GRAPHQL_VALIDATION_FAILED
        if isinstance(error, ValidationAbortedError) and error.message == _GAVE_UP:
            error.message, code = _TOO_COSTLY_TO_VALIDATE, ClientErrorCode.QUERY_TOO_COMPLEX
        error.extensions = {**(error.extensions or {}), "code": code.value}
