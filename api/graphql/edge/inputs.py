"""Input checked once, at the edge, by kind, with the same verdict on every database.

- Text: every string and ID a client sends, in any argument or input field, must be storable
  (`domain.model.problems.is_storable`). `storable_arguments` checks the coerced arguments of every
  field before its resolver runs, so a new argument cannot miss the check: a mutation answers its
  payload with a userError (INVALID_TEXT), any other operation the error BAD_USER_INPUT.
- Times: the `DateTime` scalar reads an RFC 3339 date-time, its offset required, and nothing else;
  one that cannot be moved to UTC (year 1 or 9999 with an offset) is BAD_USER_INPUT. Cursors hold
  their times in UTC too (`as_utc`).
- Text decoded from what a client sent (the key inside a global id) is checked as if it had been
  sent as it is (`refuse_unstorable`).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationType,
    StringValueNode,
    ValueNode,
    Visitor,
    get_nullable_type,
    value_from_ast_untyped,
    visit,
)
from graphql.pyutils import AwaitableOrValue
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType as StrawberryOperationType

from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.types import UserError
from domain.model.problems import Problem, ProblemCode, is_storable


def as_utc(value: datetime) -> datetime:
    """`value` in UTC, read as UTC when it has no offset. Raises BAD_USER_INPUT when UTC has no such
    time (Python's datetimes, like most databases', end at year 9999 and begin at year 1)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise client_error(
            f"{value.isoformat()} cannot be moved to UTC: it falls outside years 1 to 9999",
            ClientErrorCode.BAD_USER_INPUT,
        ) from None


# RFC 3339 section 5.6: full-date "T" full-time, the offset required; "T" and "Z" in either case.
# A fraction finer than a nanosecond has no use and no bound, so at most 9 digits; Python keeps 6.
_RFC_3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_date_time(value: object) -> datetime:
    """The instant an RFC 3339 date-time (`2026-01-31T09:30:00Z`, `2026-01-31T10:30:00.5+01:00`)
    stands for, in UTC. Raises BAD_USER_INPUT for anything else: no offset, a date alone, the basic
    format, a space for "T", a fraction of over 9 digits (beyond 6 it is cut), a day or offset that
    does not exist, a leap second (which Python's datetimes do not hold), or an instant UTC cannot
    hold (`as_utc`)."""
    match = _RFC_3339.fullmatch(value) if isinstance(value, str) else None
    shown = reprlib.repr(value)  # shortened: the value is the client's, of any length
    if match is None:
        raise client_error(
            f"{shown} is not an RFC 3339 date-time such as 2026-01-31T09:30:00Z",
            ClientErrorCode.BAD_USER_INPUT,
        )
    year, month, day, hour, minute, second, fraction, sign, offset_hours, offset_minutes = match.groups()
    if second == "60":  # RFC 3339 allows it; refused rather than moved, so that no time is altered
        raise client_error(
            f"{shown} is a leap second, which this service does not accept: send :59 instead",
            ClientErrorCode.BAD_USER_INPUT,
        )
    try:
        offset = UTC
        if sign is not None:
            if int(offset_hours) > 23 or int(offset_minutes) > 59:
                raise ValueError("no such offset")
            minutes = int(offset_hours) * 60 + int(offset_minutes)
            offset = timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
        microsecond = int((fraction or "0").ljust(6, "0")[:6])
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), microsecond, offset
        )
    except ValueError:
        raise client_error(
            f"{shown} is not a date-time that exists (RFC 3339)", ClientErrorCode.BAD_USER_INPUT
        ) from None
    return as_utc(parsed)


def _date_time_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> datetime:
    """`parse_date_time` of a value written in the document (`node`), its refusal given the value's
    place (`locations`) as graphql-core's refusals of such values are: validation reports it as
    raised, and `parse_date_time` knows no node."""
    try:
        return parse_date_time(value_from_ast_untyped(node, variables))
    except GraphQLError as refusal:
        raise GraphQLError(refusal.message, node, extensions=refusal.extensions) from None


DateTime = strawberry.scalar(
    name="DateTime",
    description="An RFC 3339 date-time, such as 2026-01-31T09:30:00Z or 2026-01-31T10:30:00.5+01:00: "
    "the offset is required, a fraction has at most 9 digits (the service keeps 6). A leap second "
    "(second 60), though RFC 3339 allows it, is refused: send :59. Anything else, and "
    "a time that cannot be moved to UTC (year 1 or 9999 with an offset), is refused with "
    "BAD_USER_INPUT. The service answers in UTC.",
    serialize=datetime.isoformat,
    parse_value=parse_date_time,
    parse_literal=_date_time_literal,
)


def unstorable_text(value: Any, path: str = "") -> Iterator[str]:
    """The paths (`lines[0].sku`) of the strings in a coerced GraphQL value that cannot be stored,
    in the value's order. Walked with a stack of its own: variables nest as deep as their JSON."""
    stack = [(path, value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not is_storable(value):
                yield path
        elif isinstance(value, dict):
            stack += [(f"{path}.{name}" if path else name, item) for name, item in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(f"{path}[{index}]", value[index]) for index in reversed(range(len(value)))]


def refuse_unstorable_subscription(context: ExecutionContext) -> None:
    """Refuses a subscription whose arguments hold text that cannot be stored (BAD_USER_INPUT),
    before it starts. graphql-core starts a subscription's root field without the resolver middleware
    (`storable_arguments`), so its arguments are checked as the client sent them: its variables and
    the document's string literals."""
    if context.operation_type is not StrawberryOperationType.SUBSCRIPTION:
        return
    sent: list[object] = [context.variables or {}]
    if context.graphql_document is not None:
        sent.append(_string_literals(context.graphql_document))
    if next(unstorable_text(sent), None) is not None:
        raise client_error(f"an argument {_MESSAGE}", ClientErrorCode.BAD_USER_INPUT)


def storable_arguments(
    _next: Callable[..., AwaitableOrValue[object]],
    root: Any,
    info: GraphQLResolveInfo,
    *args: Any,
    **kwargs: Any,
) -> AwaitableOrValue[object]:
    """Resolver middleware: refuses a field whose coerced arguments hold text that cannot be stored,
    before its resolver runs, so that a new argument cannot miss the check. A mutation answers its
    payload with a userError (INVALID_TEXT); any other field raises BAD_USER_INPUT."""
    unstorable = next(unstorable_text(kwargs), None) if kwargs else None
    if unstorable is not None:
        return _refuse(info, unstorable)
    return _next(root, info, *args, **kwargs)


_MESSAGE = "holds a NUL character or a lone surrogate, which cannot be stored"


def _string_literals(document: DocumentNode) -> list[str]:
    found: list[str] = []

    class Strings(Visitor):
        def enter_string_value(self, node: StringValueNode, *_: object) -> None:
            found.append(node.value)

    visit(document, Strings())
    return found


def refuse_unstorable(argument: str, value: object) -> None:
    """Raises BAD_USER_INPUT, naming `argument`, when `value` (a string, or lists and dicts of them)
    holds text that cannot be stored: for text decoded from an argument, such as the key inside a
    global id, which `storable_arguments` sees only encoded."""
    if next(unstorable_text(value), None) is not None:
        raise _unstorable(argument)


def _unstorable(argument: str) -> GraphQLError:
    return client_error(f"{argument} {_MESSAGE}", ClientErrorCode.BAD_USER_INPUT, argument=argument)


def _refuse(info: GraphQLResolveInfo, path: str) -> object:
    message = f"{path} {_MESSAGE}"
    if info.operation.operation is not OperationType.MUTATION or info.path.prev is not None:
        raise _unstorable(path)
    # A mutation's payload carries refused input as userErrors; its field names are relative to
    # the `input` argument, like those of every other refusal.
    field = path.removeprefix("input.")
    payload_type = get_nullable_type(info.return_type)
    assert isinstance(payload_type, GraphQLObjectType), "a mutation answers a payload object"
    payload = payload_type.extensions["strawberry-definition"].origin
    return payload(user_errors=[UserError.from_problem(Problem(ProblemCode.INVALID_TEXT, field, message))])
