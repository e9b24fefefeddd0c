"""What one execution may hold, checked before it runs (`ExecutionLimits`): the values of its
variables (`document_limits.too_many_variables`), and the values of its answer (`answer_size`).

The document limits (api/graphql/document_limits.py) bound the fields a document writes, not how
many times the lists it reaches repeat them. A list of 100 ids, thirty aliases and an order's 100
lines are a 1.2 KB query and a million values, which graphql-core completes in one pass of the
event loop, seconds long.

Each field counts as many values as the lists around it multiply it into, for the lists whose length
a client decides: a connection's `edges` and `nodes` (its page: `first` or `last`, else
relay.DEFAULT_PAGE), `nodes(ids:)` (its ids), an order's `lines` and a shipment's or order's `picks`
(at most MAX_LINES an order). Other lists count once: their lengths are the catalog's or a saga's
own, which no request makes longer. Past LIMITS[ANSWER] the operation is refused before it runs,
with QUERY_TOO_COMPLEX and `limit` `answer`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from api.graphql.document_limits import LIMITS, Limit, too_many_variables
from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.relay import DEFAULT_PAGE, MAX_NODES, MAX_PAGE
from domain.model.problems import MAX_LINES

# The lists an order's size decides, by field name: at most MAX_LINES lines, and a pick or more each.
ORDER_LISTS = frozenset({"lines", "picks"})
PAGED = frozenset({"edges", "nodes"})  # of a connection; `nodes(ids:)` too
# A document's text holds every field name it selects: one without any of these has no list to repeat.
_NAMES_A_LIST = re.compile("|".join(sorted(ORDER_LISTS | PAGED)))


def answer_size(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """The most values the operation of `document` named `operation_name` may answer with these
    `variables`, as the module's docstring counts them; 0 for an operation the document lacks. The
    document is a validated one: its fields are the schema's, and the document limits bound its
    walk, spreads written out included."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return operation_answer_size(schema, operation, fragments, variables)


def operation_answer_size(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """`answer_size` of `operation`, its document's `fragments` given by name."""
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    total = 0
    # (selection set, the type it selects on, how many times it repeats, its page if a connection's)
    stack: list[tuple[SelectionSetNode, GraphQLNamedType, int, int | None]] = [
        (operation.selection_set, root, 1, None)
    ]
    while stack:
        selection_set, parent, repeats, page = stack.pop()
        for field, on in _fields(selection_set, parent, schema, fragments):
            fields = on.fields if isinstance(on, GraphQLObjectType | GraphQLInterfaceType) else {}
            definition = fields.get(field.name.value)
            if definition is None:  # __typename, or an introspection field (bounded apart)
                total += repeats
                continue
            count = repeats * _length(field, page, variables)
            total += count
            if field.selection_set is not None:
                inner = get_named_type(definition.type)
                inner_page = _page(field, variables) if inner.name.endswith("Connection") else None
                stack.append((field.selection_set, inner, count, inner_page))
    return total


def _fields(
    selection_set: SelectionSetNode,
    parent: GraphQLNamedType,
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
    """The fields `selection_set` selects, each with the type it is selected on, inline fragments
    and spreads looked through (a spread once per place it is written, as it is answered)."""
    pending: list[tuple[SelectionSetNode, GraphQLNamedType]] = [(selection_set, parent)]
    while pending:
        selections, on = pending.pop()
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                yield selection, on
                continue
            fragment: FragmentDefinitionNode | InlineFragmentNode | None = (
                fragments.get(selection.name.value)
                if isinstance(selection, FragmentSpreadNode)
                else selection
                if isinstance(selection, InlineFragmentNode)
                else None
            )
            if fragment is None:
                continue
            condition = fragment.type_condition
            named = schema.get_type(condition.name.value) if condition is not None else None
            pending.append((fragment.selection_set, named or on))


def _length(field: FieldNode, page: int | None, variables: Mapping[str, Any]) -> int:
    """How many items the list `field` returns at most, for the lists a client decides; 1 else.
    `page` is the page of the connection `field` is selected on, None when it is not a connection."""
    name = field.name.value
    if name in PAGED and page is not None:
        return page
    if name in ORDER_LISTS:
        return MAX_LINES
    if name == "nodes":
        ids = _argument(field, "ids", variables)
        return len(ids) if isinstance(ids, list) else MAX_NODES
    return 1


def _page(field: FieldNode, variables: Mapping[str, Any]) -> int:
    """The page a connection field asks for: `first` or `last`, else DEFAULT_PAGE; MAX_PAGE for a
    size it would refuse."""
    for name in ("first", "last"):
        size = _argument(field, name, variables)
        if size is not None:
            return size if isinstance(size, int) and 0 <= size <= MAX_PAGE else MAX_PAGE
    return DEFAULT_PAGE


def _argument(field: FieldNode, name: str, variables: Mapping[str, Any]) -> object:
    """The value of `field`'s argument `name` as written or as its variable holds it; None when not
    given. Only what `_length` and `_page` read: an int, or a list."""
    node: ValueNode | None = next((a.value for a in field.arguments or () if a.name.value == name), None)
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, ListValueNode):
        return list(node.values)
    return None


class ExecutionLimits(SchemaExtension):
    """Refuses, before they are coerced, variables holding more values than LIMITS[VARIABLES]; then,
    before it runs, an operation whose answer may hold more values than LIMITS[ANSWER]
    (`answer_size`): QUERY_TOO_COMPLEX, `limit` `variables` or `answer`, with `maximum`."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        refusal = too_many_variables(context.variables)
        if refusal is not None:
            raise refusal
        document, query = context.graphql_document, context.query or ""
        # placeOrder's document, for one, names no such list: not walked.
        if document is not None and _NAMES_A_LIST.search(query):
            variables = context.variables or {}
            size = answer_size(context.schema._schema, document, context.operation_name, variables)
            if size > LIMITS[Limit.ANSWER]:
                raise too_large(size)
        yield


def too_large(size: int) -> GraphQLError:
    maximum = LIMITS[Limit.ANSWER]
    return client_error(
        f"The answer may hold {size} values, its lists' lengths multiplied; at most {maximum} are "
        "allowed: ask for smaller pages, fewer ids or fewer aliases",
        ClientErrorCode.QUERY_TOO_COMPLEX,
        limit=Limit.ANSWER.value,
        maximum=maximum,
    )
