"""The values an answer may hold, counted before it runs (api/graphql/edge/execution_limits.py)."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import GraphQLList, GraphQLObjectType, get_nullable_type, parse

from api.graphql.connections import DEFAULT_PAGE
from api.graphql.edge.execution_limits import LIMITED, answer_size
from api.graphql.schema import schema

SCHEMA = schema._schema


def size(document: str, operation_name: str | None = None, **variables: Any) -> int:
    return answer_size(SCHEMA, parse(document), operation_name, variables)


def test_fields_outside_lists_count_once_each() -> None:
    assert size("{ __typename sagaMetrics { completed failed } }") == 4


@pytest.mark.parametrize(
    ("document", "variables", "page"),
    [
        ("{ sagas { edges { cursor } } }", {}, DEFAULT_PAGE),
        ("{ sagas(first: 7) { edges { cursor } } }", {}, 7),
        ("{ sagas(last: 3) { edges { cursor } } }", {}, 3),
        ("query ($n: Int) { sagas(first: $n) { edges { cursor } } }", {"n": 40}, 40),
        ("query ($n: Int) { sagas(first: $n) { edges { cursor } } }", {"n": 10**6}, 100),  # refused later
    ],
)
def test_a_connections_edges_repeat_as_its_page(document: str, variables: dict[str, Any], page: int) -> None:
    assert size(document, **variables) == 1 + page + page  # sagas, edges, cursor per edge


def test_lists_multiply_what_they_hold_aliases_spreads_and_ids_included() -> None:
    ids = ", ".join(f'"o{n}"' for n in range(100))
    aliases = " ".join(f"a{n}: lines {{ sku quantity __typename }}" for n in range(30))
    literal = f"{{ nodes(ids: [{ids}]) {{ ... on Order {{ {aliases} }} }} }}"
    # 100 nodes; in each, 30 lists of 100 lines, and each line's three fields.
    expected = 100 + 100 * 30 * (100 + 100 * 3)
    assert size(literal) == expected == 1_200_100
    through_variables = (
        f"query ($ids: [ID!]!) {{ nodes(ids: $ids) {{ ...F }} }} fragment F on Order {{ {aliases} }}"
    )
    assert size(through_variables, ids=[f"o{n}" for n in range(100)]) == expected


def test_the_operation_named_is_the_one_counted() -> None:
    document = "query A { __typename } query B { sagas(first: 2) { edges { cursor } } }"
    assert (size(document, "A"), size(document, "B"), size(document, "C")) == (1, 5, 0)


def test_fields_of_one_response_key_count_once_as_graphql_merges_them() -> None:
    # Relay's way: each component spreads its own fragment, and they select the same fields.
    one = "{ sagas(first: 100) { edges { node { order { lines { sku quantity } } } } } }"
    spread = (
        "{ sagas(first: 100) { edges { node { order { ...A ...B lines { sku } } } } } } "
        "fragment A on Order { lines { sku } } fragment B on Order { lines { quantity } }"
    )
    assert size(spread) == size(one) == 1 + 100 + 100 + 100 + 100 * 100 * 3
    # Aliases are distinct keys: each list is answered again.
    assert size(
        "{ sagas(first: 100) { edges { node { order { a: lines { sku } b: lines { sku } } } } } }"
    ) > size(one)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        # A list field counts its items, and each item's fields as many times again.
        (
            '{ sagaActivity(since: "2026-01-01T00:00:00Z", until: "2026-01-02T00:00:00Z") { start } }',
            1440 * 2,
        ),
        ("{ sagasNeedingAttention { id } }", 50 * 2),  # its limit's default
        ("{ sagasNeedingAttention(limit: 7) { id } }", 7 * 2),
        # A connection counts once, then its page of edges and their fields.
        ("{ journalEvents { edges { cursor } } }", 1 + 100 * 2),  # its own default page
        (
            "query ($n: Int = 60) { sagas(first: $n) { edges { cursor } } }",
            1 + 60 * 2,
        ),  # the variable's default
    ],
)
def test_lists_a_client_sizes_count_as_many_items_as_it_may_ask_for(document: str, expected: int) -> None:
    assert size(document) == expected


def test_every_list_field_with_a_limit_is_counted_by_it() -> None:
    # A new one left out would count once, and its aliases pass the bound unseen.
    limited = {
        name
        for type_ in SCHEMA.type_map.values()
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__")
        for name, field in type_.fields.items()
        if "limit" in field.args and isinstance(get_nullable_type(field.type), GraphQLList)
    }
    assert limited == LIMITED


def test_an_interfaces_fragment_on_an_object_selects_the_same_fields() -> None:
    assert size("{ sagas(first: 100) { edges { node { id ... on Node { id } } } } }") == 1 + 100 + 100 + 100
