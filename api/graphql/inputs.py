"""Input checked once, at the edge, by kind, with the same verdict on every database.

- Text: every string and ID a client sends, in any argument or input field, must be storable
  (`domain.problems.is_storable`). `StorableText` checks the coerced arguments of every field before
  its resolver runs, so a new argument cannot miss the check: a mutation answers its payload with a
  userError (INVALID_TEXT), any other operation the error BAD_USER_INPUT.
- Times: the `DateTime` scalar reads an ISO 8601 date and time; one without an offset means UTC,
  whatever the server's time zone, and one that cannot be moved to UTC (year 1 or 9999 with an
  offset) is BAD_USER_INPUT. Cursors hold their times the same way (`as_utc`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationType,
    StringValueNode,
    Visitor,
    get_nullable_type,
    visit,
)
from graphql.pyutils import AwaitableOrValue
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.types import UserError
from domain.problems import Problem, ProblemCode, is_storable


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


def _parse_date_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise client_error("a DateTime is an ISO 8601 string", ClientErrorCode.BAD_USER_INPUT)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise client_error(
            f"{value!r} is not an ISO 8601 date and time", ClientErrorCode.BAD_USER_INPUT
        ) from None
    return as_utc(parsed)


DateTime = strawberry.scalar(
    name="DateTime",
    description="An ISO 8601 date and time, such as 2026-01-31T09:30:00Z. One without an offset means "
    "UTC, whatever the server's time zone; one that cannot be moved to UTC (year 1 or 9999 with an "
    "offset) is refused with BAD_USER_INPUT. The service answers in UTC.",
    serialize=datetime.isoformat,
    parse_value=_parse_date_time,
)


def unstorable_text(value: Any, path: str = "") -> Iterator[str]:
    """The paths (`lines[0].sku`) of the strings in a coerced GraphQL value that cannot be stored."""
    if isinstance(value, str):
        if not is_storable(value):
            yield path
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from unstorable_text(item, f"{path}.{name}" if path else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_text(item, f"{path}[{index}]")


class StorableText(SchemaExtension):
    """Refuses a field whose arguments hold text that cannot be stored, before its resolver runs.
    A subscription's root field is started by graphql-core without the resolver middleware, so its
    arguments are checked as the client sent them (variables and the document's string literals)
    before it starts."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.operation_type is StrawberryOperationType.SUBSCRIPTION:
            sent: list[object] = [context.variables or {}]
            if context.graphql_document is not None:
                sent.append(_string_literals(context.graphql_document))
            if next(unstorable_text(sent), None) is not None:
                raise client_error(f"an argument {_MESSAGE}", ClientErrorCode.BAD_USER_INPUT)
        yield

    def resolve(
        self,
        _next: Callable[..., AwaitableOrValue[object]],
        root: Any,
        info: GraphQLResolveInfo,
        *args: Any,
        **kwargs: Any,
    ) -> AwaitableOrValue[object]:
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


def _refuse(info: GraphQLResolveInfo, path: str) -> object:
    message = f"{path} {_MESSAGE}"
    if info.operation.operation is not OperationType.MUTATION or info.path.prev is not None:
        raise client_error(message, ClientErrorCode.BAD_USER_INPUT, argument=path)
    # A mutation's payload carries refused input as userErrors; its field names are relative to
    # the `input` argument, like those of every other refusal.
    field = path.removeprefix("input.")
    payload_type = get_nullable_type(info.return_type)
    assert isinstance(payload_type, GraphQLObjectType), "a mutation answers a payload object"
    payload = payload_type.extensions["strawberry-definition"].origin
    return payload(user_errors=[UserError.from_problem(Problem(ProblemCode.INVALID_TEXT, field, message))])
