"""What one document may cost, measured on the parsed document before any validation rule runs, so
that no request holds the event loop for long whatever it holds.

A fragment spread is cheap to write and may stand for a great deal: thirty fragments each spreading
the next twice are 2 KB of text and a billion fields once written out. Every walk over a document
that follows spreads (a depth limiter, a count of aliases, the root fields authorization reads)
costs that much unless it expands each fragment once. Here each fragment's `Cost` is found once,
without recursion, and an operation's cost is the sum of what it spreads; past a limit the
document is refused with QUERY_TOO_COMPLEX before the standard rules (or anything else) walk it.

The limits (`LIMITS`):
- depth: fields nested inside fields, fragments looked through, introspection fields not counted
  (the rule of strawberry's QueryDepthLimiter, whose walk is exponential in doubled spreads);
- aliases: aliased fields, every spread counted again (strawberry's MaxAliasesLimiter's rule);
- selections: fields once every spread is written out; as many as the token limit lets a document
  without fragments select, so fragments shorten a document but never make it cost more;
- nesting: selection sets inside one another, fields, inline fragments and spreads alike, and
  introspection too: every one is a level of recursion in parsing, validation or execution;
- schema: `__schema` fields of distinct response keys (fields of one key are answered once): one
  walks the whole schema (some 0.1 s of the event loop for a full introspection query), and aliases
  would multiply it; a client needs one;
- variables: the values a request's variables hold, which coercion walks (`too_many_variables`);
- answer: the values an answer may hold, once the lists it reaches are multiplied out, found with
  the schema and the variables before the operation runs (api/graphql/edge/execution_limits.py).
The rule OverlappingFieldsCanBeMerged, whose comparisons grow with the square of same-named fields,
meters itself: graphql-core gives up past `OVERLAP_BUDGET` units of work (about a tenth of a second).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
)
from graphql.validation.rules import overlapping_fields_can_be_merged

from api.graphql.edge.errors import ClientErrorCode, client_error

MAX_TOKENS = 4000
# The longest document text, in characters, refused before it is parsed: far more than clients'
# documents hold (GraphiQL's introspection query is about 2,000), while one token may hold the whole
# body (a block string of half a million lines took 0.3 s of the event loop to lex).
MAX_DOCUMENT_CHARACTERS = 65_536


def too_long(document: str) -> str | None:
    """The refusal of a document text over MAX_DOCUMENT_CHARACTERS, or None."""
    if len(document) <= MAX_DOCUMENT_CHARACTERS:
        return None
    return (
        f"The document holds more than {MAX_DOCUMENT_CHARACTERS} characters: send a shorter one, "
        "with its values as variables"
    )


class Limit(enum.StrEnum):
    """The measures of a document that are limited, as `extensions.limit` names them."""

    DEPTH = "depth"
    ALIASES = "aliases"
    SELECTIONS = "selections"
    NESTING = "nesting"
    SCHEMA = "schema"
    VARIABLES = "variables"
    ANSWER = "answer"


LIMITS: Mapping[Limit, int] = {
    Limit.DEPTH: 12,
    Limit.ALIASES: 30,
    Limit.SELECTIONS: MAX_TOKENS,
    # Deeper than any depth the depth limit allows, and than the introspection query GraphiQL sends
    # (about 20); far from Python's recursion limit in execution, some 10 frames a level.
    Limit.NESTING: 64,
    # GraphiQL's introspection query, and any client's, selects it once.
    Limit.SCHEMA: 1,
    # Values in a request's variables, every list item and object field counted: far above what any
    # input takes (an order has at most 100 lines), far below what would keep coercion busy for long.
    Limit.VARIABLES: 10_000,
    # Values an answer may hold, its lists' lengths multiplied (api/graphql/edge/execution_limits.py): about
    # three times what the console's largest page may (15,804); completing them takes some 0.2 s.
    Limit.ANSWER: 50_000,
}

# The limits a document's `Cost` measures; the variables are the request's, counted apart.
MEASURED = (Limit.DEPTH, Limit.ALIASES, Limit.SELECTIONS, Limit.NESTING, Limit.SCHEMA)

# graphql-core reads its budget from this module attribute when the rule starts (its documented
# setting); its default, 500,000, takes most of a second. The console's documents and GraphiQL's
# introspection query spend none of it: only same-named fields cost.
OVERLAP_BUDGET = 50_000
overlapping_fields_can_be_merged.MAX_COMPLEXITY_BUDGET = OVERLAP_BUDGET


@dataclass(frozen=True, slots=True)
class Cost:
    """What a selection set stands for once its fragments are written out: `selections` (fields),
    `aliases`, `depth`, `nesting` and `schema` as the module's docstring defines them."""

    selections: int = 0
    aliases: int = 0
    depth: int = 0
    nesting: int = 0
    schema: frozenset[str] = frozenset()  # the response keys of `__schema` fields

    def measure(self, limit: Limit) -> int:
        return len(self.schema) if limit is Limit.SCHEMA else int(getattr(self, limit.value))


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    """The fragments `document` defines, by name."""
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def too_costly(document: DocumentNode) -> GraphQLError | None:
    """The refusal (QUERY_TOO_COMPLEX, with `limit` and `maximum`) of `document` when an operation
    in it passes a limit, or a fragment nests past `Limit.NESTING`; None when it may be validated.
    One refusal, the first limit passed, however many there are. Unknown fragments and cycles count
    as nothing here: validation reports them."""
    costs = fragment_costs(fragments_of(document))
    for operation in document.definitions:
        if isinstance(operation, OperationDefinitionNode):
            cost = selection_set_cost(operation.selection_set, costs)
            name = f"'{operation.name.value if operation.name else 'anonymous'}'"
            for limit in MEASURED:
                if cost.measure(limit) > LIMITS[limit]:
                    return _refusal(name, cost, limit)
    for name, cost in costs.items():  # fragments no operation spreads are validated too
        if cost.nesting > LIMITS[Limit.NESTING]:
            return _refusal(f"Fragment '{name}'", cost, Limit.NESTING)
    return None


def too_many_variables(variables: Mapping[str, object] | None) -> GraphQLError | None:
    """QUERY_TOO_COMPLEX (limit `variables`) when the variables hold more values than
    LIMITS[VARIABLES], every list item and object field counted; counted without recursion and
    given up as soon as the limit is passed, so any JSON costs at most that many steps."""
    maximum, count = LIMITS[Limit.VARIABLES], 0
    stack: list[object] = [variables or {}]
    while stack:
        value = stack.pop()
        count += 1
        if count > maximum + 1:  # the variables object itself is not one of them
            return client_error(
                f"The variables hold more than {maximum} values",
                ClientErrorCode.QUERY_TOO_COMPLEX,
                limit=Limit.VARIABLES.value,
                maximum=maximum,
            )
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def _refusal(what: str, cost: Cost, limit: Limit) -> GraphQLError:
    maximum = LIMITS[limit]
    message = {
        Limit.DEPTH: f"{what} exceeds maximum operation depth of {maximum}",
        Limit.ALIASES: f"{what} has more than {maximum} aliases once its fragments are written out",
        Limit.SELECTIONS: f"{what} selects more than {maximum} fields once its fragments are written out",
        Limit.NESTING: f"{what} nests selections {cost.nesting} deep, fragments included; "
        f"at most {maximum} are allowed",
        Limit.SCHEMA: f"{what} selects __schema under {len(cost.schema)} names once its fragments are "
        f"written out; at most {maximum} is allowed",
    }[limit]
    return client_error(message, ClientErrorCode.QUERY_TOO_COMPLEX, limit=limit.value, maximum=maximum)


def fragment_costs(fragments: Mapping[str, FragmentDefinitionNode]) -> dict[str, Cost]:
    """The cost of every fragment, each found once, after the fragments it spreads: a walk of the
    spreads with a stack of its own, in which a spread closing a cycle adds nothing."""
    spreads = {name: list(_spreads(fragment.selection_set)) for name, fragment in fragments.items()}
    costs: dict[str, Cost] = {}
    for root in fragments:
        if root in costs:
            continue
        path = [(root, iter(spreads[root]))]
        on_path = {root}
        while path:
            name, pending = path[-1]
            for spread in pending:
                if spread in fragments and spread not in costs and spread not in on_path:
                    path.append((spread, iter(spreads[spread])))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                on_path.discard(name)
                costs[name] = selection_set_cost(fragments[name].selection_set, costs)
    return costs


def _spreads(selection_set: SelectionSetNode) -> Iterator[str]:
    for nested in _selection_sets(selection_set):
        for selection in nested.selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value


def _selection_sets(root: SelectionSetNode) -> list[SelectionSetNode]:
    """`root` and the selection sets inside it, each after the one holding it."""
    found, stack = [], [root]
    while stack:
        selection_set = stack.pop()
        found.append(selection_set)
        stack += [inside for s in selection_set.selections if (inside := _inside(s)) is not None]
    return found


def _inside(selection: SelectionNode) -> SelectionSetNode | None:
    return selection.selection_set if isinstance(selection, FieldNode | InlineFragmentNode) else None


def selection_set_cost(root: SelectionSetNode, fragments: Mapping[str, Cost]) -> Cost:
    """The cost of `root`, its spreads costing what `fragments` says (nothing for one it lacks);
    the selection sets inside are measured innermost first, so nothing recurses."""
    costs: dict[int, Cost] = {}
    for selection_set in reversed(_selection_sets(root)):
        selections = aliases = depth = nesting = 0
        schema: frozenset[str] = frozenset()
        for selection in selection_set.selections:
            inner: Cost | None
            if isinstance(selection, FragmentSpreadNode):
                inner = fragments.get(selection.name.value)
            else:
                inside = _inside(selection)
                inner = costs[id(inside)] if inside is not None else None
            if isinstance(selection, FieldNode):
                selections += 1
                aliases += selection.alias is not None
                if selection.name.value == "__schema":
                    schema |= {(selection.alias or selection.name).value}
            if inner is None:  # a leaf, or a spread of a fragment validation will refuse
                continue
            selections += inner.selections
            aliases += inner.aliases
            schema |= inner.schema
            nesting = max(nesting, inner.nesting + 1)
            if not isinstance(selection, FieldNode):
                depth = max(depth, inner.depth)
            elif not selection.name.value.startswith("__"):
                depth = max(depth, inner.depth + 1)
        costs[id(selection_set)] = Cost(selections, aliases, depth, nesting, schema)
    return costs[id(root)]
