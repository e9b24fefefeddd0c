"""What one execution may hold, checked before it runs (`refuse_past_limits`): the values of its
variables (`document_limits.too_many_variables`), and the values of its answer (`answer_size`).

The document limits (api/graphql/edge/document_limits.py) bound the fields a document writes, not how
many times the lists it reaches repeat them. A list of 100 ids, thirty aliases and an order's 100
lines are a 1.2 KB query and a million values, which graphql-core completes in one pass of the
event loop, seconds long.

Each field counts as many values as the lists around it multiply it into, fields of one response key
counted once as GraphQL answers them, for the lists whose length a client decides or may grow: a
connection's `edges` and `nodes` (its page: `first` or `last`, else its default), `nodes(ids:)` (its
ids), a list with a `limit` (its limit), `sagaActivity` (its minutes, at most a day's), an order's
`lines` and `picks` (MAX_LINES each: an order's lines are at most that, and its picks seldom more).
Other lists count once: their lengths are the catalog's or a saga's own, which no request makes
longer, and bounding them by a guess would refuse the console's pages. Past LIMITS[ANSWER] the
operation is refused before it runs, with QUERY_TOO_COMPLEX and `limit` `answer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
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
from strawberry.types import ExecutionContext

from api.graphql.connections import DEFAULT_PAGE, MAX_PAGE
from api.graphql.edge.document_limits import LIMITS, Limit, fragments_of, too_many_variables
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.interventions import MAX_ATTENTION_LIMIT
from api.graphql.journal import DEFAULT_JOURNAL_PAGE
from api.graphql.relay import MAX_NODES
from domain.model.problems import MAX_LINES
from persistence.read.analytics import MAX_ACTIVITY_MINUTES

# The lists an order's size decides, by field name: at most MAX_LINES lines, and a pick or more each.
ORDER_LISTS = frozenset({"lines", "picks"})
PAGED = frozenset({"edges", "nodes"})  # of a connection; `nodes(ids:)` too
# The other lists a client sizes: by a `limit` argument (its default when not given), or by a window.
LIMITED = frozenset({"sagasNeedingAttention"})
WINDOWED = frozenset({"sagaActivity"})
# A document's text holds every field name it selects: one without any of these has no list to repeat.
_NAMES_A_LIST = re.compile("|".join(sorted(ORDER_LISTS | PAGED | LIMITED | WINDOWED)))


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
    return operation_answer_size(schema, operation, fragments_of(document), variables)


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
    arguments = _Arguments(operation, variables)
    total = 0
    # (the selection sets of one field, the type they select on, how many times they repeat, and
    # the connection's page when that field is one)
    stack: list[tuple[list[SelectionSetNode], GraphQLNamedType, int, int | None]] = [
        ([operation.selection_set], root, 1, None)
    ]
    while stack:
        selection_sets, parent, repeats, page = stack.pop()
        for (_, on, _), fields in _merged(selection_sets, parent, schema, fragments).items():
            field = fields[0]
            defined = on.fields if isinstance(on, GraphQLObjectType | GraphQLInterfaceType) else {}
            definition = defined.get(field.name.value)
            if definition is None:  # __typename, or an introspection field (bounded apart)
                total += repeats
                continue
            count = repeats * _length(field, definition, page, arguments)
            total += count
            inner_sets = [f.selection_set for f in fields if f.selection_set is not None]
            if inner_sets:
                inner = get_named_type(definition.type)
                connection = inner.name.endswith("Connection")
                stack.append((inner_sets, inner, count, _page(field, arguments) if connection else None))
    return total


def _merged(
    selection_sets: list[SelectionSetNode],
    parent: GraphQLNamedType,
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> dict[tuple[str, GraphQLNamedType, str], list[FieldNode]]:
    """The fields the selection sets select, inline fragments and spreads looked through, grouped
    as GraphQL answers them: fields of one response key (on one type, of one name) are one field,
    their selections merged, however many fragments repeat them."""
    merged: dict[tuple[str, GraphQLNamedType, str], list[FieldNode]] = {}
    pending = [(selection_set, parent) for selection_set in selection_sets]
    while pending:
        selections, on = pending.pop()
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                merged.setdefault((key, on, selection.name.value), []).append(selection)
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
            # On an object type the object is known: an interface's fragment selects its fields.
            pending.append((fragment.selection_set, on if isinstance(on, GraphQLObjectType) else named or on))
    return merged


def _length(field: FieldNode, definition: GraphQLField, page: int | None, arguments: _Arguments) -> int:
    """How many items the list `field` returns at most, for the lists a client decides; 1 else.
    `page` is the page of the connection `field` is selected on, None when it is not a connection."""
    name = field.name.value
    if name in PAGED and page is not None:
        return page
    if name in ORDER_LISTS:
        return MAX_LINES
    if name == "nodes":
        ids = arguments.value(field, definition, "ids")
        return len(ids) if isinstance(ids, list) else MAX_NODES
    if name in WINDOWED:
        return MAX_ACTIVITY_MINUTES
    if name in LIMITED:
        limit = arguments.value(field, definition, "limit")
        return limit if isinstance(limit, int) and 0 <= limit <= MAX_ATTENTION_LIMIT else MAX_ATTENTION_LIMIT
    return 1


def _page(field: FieldNode, arguments: _Arguments) -> int:
    """The page a connection field asks for: `first` or `last`, else its default page; MAX_PAGE for a
    size it would refuse."""
    for name in ("first", "last"):
        size = arguments.value(field, None, name)
        if size is not None:
            return size if isinstance(size, int) and 0 <= size <= MAX_PAGE else MAX_PAGE
    return DEFAULT_JOURNAL_PAGE if field.name.value == "journalEvents" else DEFAULT_PAGE


class _Arguments:
    """The values of fields' arguments, as written or as their variables hold them (the variable's
    default when the request gives none), else the argument's own default; only what `_length` and
    `_page` read: an int, or a list."""

    def __init__(self, operation: OperationDefinitionNode, variables: Mapping[str, Any]) -> None:
        self._variables = variables
        self._defaults = {
            d.variable.name.value: d.default_value
            for d in operation.variable_definitions or ()
            if d.default_value
        }

    def value(self, field: FieldNode, definition: GraphQLField | None, name: str) -> object:
        node: ValueNode | None = next((a.value for a in field.arguments or () if a.name.value == name), None)
        if isinstance(node, VariableNode):
            variable = node.name.value
            if variable in self._variables:
                return self._variables[variable]
            node = self._defaults.get(variable)
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, ListValueNode):
            return list(node.values)
        if node is None and definition is not None and name in definition.args:
            default = definition.args[name].default_value
            return default if isinstance(default, int | list) else None
        return None


def refuse_past_limits(context: ExecutionContext) -> None:
    """Refuses, before they are coerced, variables holding more values than LIMITS[VARIABLES]; then,
    before it runs, an operation whose answer may hold more values than LIMITS[ANSWER]
    (`answer_size`). Raises QUERY_TOO_COMPLEX, `limit` `variables` or `answer`, with `maximum`."""
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


def too_large(size: int) -> GraphQLError:
    maximum = LIMITS[Limit.ANSWER]
    return client_error(
        f"The answer may hold {size} values, its lists' lengths multiplied; at most {maximum} are "
        "allowed: ask for smaller pages, fewer ids or fewer aliases",
        ClientErrorCode.QUERY_TOO_COMPLEX,
        limit=Limit.ANSWER.value,
        maximum=maximum,
    )
