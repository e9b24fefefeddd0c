"""Enforces `api/access/rules.py` on every operation, before any of its resolvers runs.

For queries, mutations and subscriptions, over HTTP and WebSocket (`authorize`, which the schema's
`EdgeRules` extension calls): it reads the operation's root fields from the validated document
(through fragments too), and refuses the whole operation when the caller is not authenticated
(UNAUTHENTICATED; SERVICE_UNAVAILABLE when its token cannot be checked for now), when one of them is
not allowed to the caller's roles (FORBIDDEN), or when its mutations pass the caller's rate limit
(RATE_LIMITED, with `retryAfterSeconds`). Introspection is open to anyone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, cast

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
    get_operation_ast,
)
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from api.access.auth import KeysUnavailable, NotAuthenticated, Principal
from api.access.rules import RULES
from api.graphql.edge.document_limits import fragments_of
from api.graphql.edge.errors import ClientErrorCode, client_error

if TYPE_CHECKING:
    from api.service import Service

INTROSPECTION = frozenset({"__schema", "__type", "__typename"})
# When the identity provider's keys cannot be fetched: PyJWKClient's own timeout is 10 s.
KEYS_RETRY_AFTER = 10


async def authorize(execution: ExecutionContext) -> None:
    """Refuses `execution` unless its caller may call every root field of its operation (through
    fragments too; introspection is open to anyone), and, for a mutation, within its rate limit.
    Raises UNAUTHENTICATED, SERVICE_UNAVAILABLE (its token cannot be checked for now), FORBIDDEN,
    BAD_REQUEST (more mutations at once than the limit lets through) or RATE_LIMITED (with
    `retryAfterSeconds`); the rules are `api.access.rules.RULES`."""
    document, kind = execution.graphql_document, execution.operation_type
    operation = get_operation_ast(document, execution.operation_name) if document else None
    if document is not None and operation is not None:
        fields = [
            f for f in root_fields(operation.selection_set, fragments_of(document)) if f not in INTROSPECTION
        ]
        if fields:
            await _check(execution.context, kind, fields)


async def _check(context: Mapping[str, object], kind: OperationType, fields: list[str]) -> None:
    who = context["identity"]
    if isinstance(who, KeysUnavailable):
        raise client_error(str(who), ClientErrorCode.SERVICE_UNAVAILABLE, retryAfterSeconds=KEYS_RETRY_AFTER)
    if isinstance(who, NotAuthenticated):
        raise client_error(str(who), ClientErrorCode.UNAUTHENTICATED)
    assert isinstance(who, Principal)
    rules = RULES[kind]
    for field in sorted(set(fields)):
        if not who.roles & rules.get(field, frozenset()):
            roles = ", ".join(sorted(who.roles)) or "no role"
            raise client_error(f"{field} is not allowed to {roles}", ClientErrorCode.FORBIDDEN)
    limit = cast("Service", context["service"]).mutation_rate_limit
    if kind is OperationType.MUTATION and limit is not None:
        if len(fields) > limit.most_at_once:
            raise client_error(
                f"an operation may hold at most {limit.most_at_once} mutations; send them in several",
                ClientErrorCode.BAD_REQUEST,
            )
        retry_after = await limit.admit(who.subject, len(fields))
        if retry_after is not None:
            raise client_error(
                f"too many mutations: at most {limit.spec} per principal",
                ClientErrorCode.RATE_LIMITED,
                retryAfterSeconds=retry_after,
            )


def root_fields(
    selections: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[str]:
    """The names of the fields selected at this level, looking through fragments (validation has
    ruled out unknown and cyclic ones). Every occurrence counts, so aliases of one field count apart."""
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from root_fields(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            yield from root_fields(fragments[selection.name.value].selection_set, fragments)
