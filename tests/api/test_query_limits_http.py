"""Abuse limits on GraphQL documents hold over HTTP and WebSocket, no document costs more than its
size (however its fragments multiply), and the limits do not cost the validation cache its hits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import DocumentNode, GraphQLError, GraphQLSchema, get_introspection_query
from graphql import parse as graphql_parse
from strawberry.schema import schema as strawberry_schema
from strawberry.schema.schema import validate_document

from api.graphql.edge import documents
from api.graphql.edge.document_limits import LIMITS, Limit
from api.service import Service
from api.settings import Settings
from tests.api.server import GraphQLClient, graphql_client
from tests.api.subscriptions import subscriptions
from tests.crash.server_process import ServerProcess, ordersaga_serve
from tests.polling import eventually

MAX_DEPTH, MAX_ALIASES = LIMITS[Limit.DEPTH], LIMITS[Limit.ALIASES]


def doubled(levels: int) -> str:
    """Each of `levels` fragments spreads the next twice: some 60 bytes a level, 2**levels spreads."""
    fragments = [
        f"fragment F{n} on Query {{ products {{ sku }} ...F{n + 1} ...F{n + 1} }}" for n in range(levels)
    ]
    return " ".join(["{ ...F0 }", *fragments, f"fragment F{levels} on Query {{ products {{ sku }} }}"])


def chain(length: int) -> str:
    """Each of `length` fragments spreads the next once."""
    fragments = [f"fragment F{n} on Query {{ products {{ sku }} ...F{n + 1} }}" for n in range(length)]
    return " ".join(["{ ...F0 }", *fragments, f"fragment F{length} on Query {{ products {{ sku }} }}"])


@pytest.fixture
async def gql(tmp_path: Path) -> AsyncIterator[GraphQLClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    async with graphql_client(Service(Settings(database_url=url))) as client:
        yield client


@pytest.fixture
async def process(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A server of its own, so that a request that held its event loop could not hold the test's."""
    async with ordersaga_serve(f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}") as server:
        yield server


async def answer(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def messages(gql: GraphQLClient, query: str) -> list[str]:
    return [e["message"] for e in (await answer(gql.http, query)).get("errors", [])]


def too_complex(body: dict[str, Any]) -> dict[str, Any]:
    """The single error's extensions, checked to be QUERY_TOO_COMPLEX."""
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    return error["extensions"]  # type: ignore[no-any-return]


async def test_a_document_nested_deeper_than_the_limit_is_refused(gql: GraphQLClient) -> None:
    nested = "order { saga { " * MAX_DEPTH + "id" + " } }" * MAX_DEPTH
    deep = '{ saga(id: "x") { ' + nested + " } }"
    assert any("exceeds maximum operation depth" in m for m in await messages(gql, deep))
    # Through fragments too, each spread once per level.
    levels = [f"fragment L{n} on Saga {{ order {{ saga {{ ...L{n + 1} }} }} }}" for n in range(MAX_DEPTH)]
    spread = " ".join(['{ saga(id: "x") { ...L0 } }', *levels, f"fragment L{MAX_DEPTH} on Saga {{ id }}"])
    assert too_complex(await answer(gql.http, spread)) == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "depth",
        "maximum": 12,
    }


async def test_a_document_with_more_aliases_than_the_limit_is_refused(gql: GraphQLClient) -> None:
    aliased = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES + 1)) + " }"
    assert any("aliases" in m for m in await messages(gql, aliased))
    within = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES)) + " }"
    assert await messages(gql, within) == []
    # A fragment's aliases count again at every spread.
    fragment = (
        "fragment A on Query { " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES // 2 + 1)) + " }"
    )
    assert (
        too_complex(await answer(gql.http, "{ ...A ... on Query { ...A } } " + fragment))["limit"]
        == "aliases"
    )


async def test_fragments_doubled_thirty_deep_are_refused_while_the_server_keeps_answering(
    process: ServerProcess,
) -> None:
    http = process.gql.http
    refused = asyncio.create_task(answer(http, doubled(30)))
    health = await http.get("/healthz", timeout=5)
    assert health.status_code == 200
    extensions = too_complex(await refused)
    assert extensions == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "selections",
        "maximum": LIMITS[Limit.SELECTIONS],
    }
    # As many fields as the limit allows, through doubled fragments, are answered.
    assert (await answer(http, doubled(9)))["data"] == {"products": []}


async def test_a_chain_of_300_spreads_is_refused_with_one_log_line(process: ServerProcess) -> None:
    http, output = process.gql.http, process.output
    start = len(output)
    assert too_complex(await answer(http, chain(300)))["limit"] == "nesting"
    # A refusal logged after it, so that everything the chain wrote has arrived.
    assert (await answer(http, "{ nothing }"))["errors"]
    await eventually(
        lambda: any("GRAPHQL_VALIDATION_FAILED" in line for line in output[start:]), "the next refusal"
    )
    logged = [line for line in output[start:] if "GRAPHQL_VALIDATION_FAILED" not in line]
    assert len(logged) == 1 and "refused QUERY_TOO_COMPLEX" in logged[0], logged[:5]


@pytest.mark.parametrize(
    ("query", "limit"),
    [
        # Selections inside selections, deeper than any depth the limit allows: introspection
        # fields do not count towards depth, but every level is a level of recursion.
        ("{ __schema { types { fields { type { " + "ofType { " * 70 + "name" + " }" * 74 + " }", "nesting"),
        ("{ " + "... on Query { " * 70 + "__typename" + " }" * 71, "nesting"),
        # A fragment no operation spreads is validated all the same.
        (chain(100).replace("{ ...F0 }", "{ __typename }"), "nesting"),
    ],
)
async def test_nesting_is_bounded_whatever_nests(gql: GraphQLClient, query: str, limit: str) -> None:
    assert too_complex(await answer(gql.http, query))["limit"] == limit


async def test_a_spread_of_an_unknown_fragment_is_a_validation_error(gql: GraphQLClient) -> None:
    (error,) = (await answer(gql.http, "{ ...Nowhere }"))["errors"]
    assert error["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "Unknown fragment 'Nowhere'" in error["message"]


async def test_fields_too_many_to_compare_are_refused_as_too_complex(gql: GraphQLClient) -> None:
    # OverlappingFieldsCanBeMerged compares every pair of same-named fields.
    same_named = "{ " + " ".join("products { sku name }" for _ in range(700)) + " }"
    extensions = too_complex(await answer(gql.http, same_named))
    assert extensions == {"code": "QUERY_TOO_COMPLEX"}


async def test_the_introspection_query_graphiql_sends_is_within_the_limits(gql: GraphQLClient) -> None:
    introspection = await answer(gql.http, get_introspection_query(descriptions=True))
    assert "errors" not in introspection and introspection["data"]["__schema"]["types"]


@pytest.mark.parametrize(
    "document",
    [
        "{ a: __schema { queryType { name } } b: __schema { queryType { name } } }",
        # Each spread walks the schema again: thirty of them held the event loop for seconds.
        "{ " + " ".join(f"s{n}: __schema {{ ...F }}" for n in range(30)) + " } "
        "fragment F on __Schema { types { name fields { name type { name fields { name } } } } }",
        "{ ...S ... on Query { s: __schema { queryType { name } } } } "
        "fragment S on Query { __schema { types { name } } }",
    ],
    ids=["aliased", "thirty-aliases-of-a-fragment", "through-a-fragment"],
)
async def test_an_operation_selecting_the_schema_more_than_once_is_refused(
    gql: GraphQLClient, document: str
) -> None:
    refusal = too_complex(await answer(gql.http, document))
    assert refusal == {"code": "QUERY_TOO_COMPLEX", "limit": "schema", "maximum": 1}


async def test_the_schema_selected_by_several_fragments_under_one_name_is_answered_once(
    gql: GraphQLClient,
) -> None:
    # GraphQL merges fields of one response key: the schema is walked once.
    document = (
        "{ ...A ...B __schema { queryType { name } } } "
        "fragment A on Query { __schema { types { name } } } "
        "fragment B on Query { __schema { mutationType { name } } }"
    )
    answered = (await answer(gql.http, document))["data"]["__schema"]
    assert answered["queryType"] == {"name": "Query"} and answered["types"]


async def test_a_subscription_is_held_to_the_same_limits(gql: GraphQLClient) -> None:
    spread = "subscription { ...S } fragment S on Subscription { sagaFeed { sequence } ...S2 ...S2 } "
    doubling = " ".join(f"fragment S{n} on Subscription {{ ...S{n + 1} ...S{n + 1} }}" for n in range(2, 30))
    async with subscriptions(str(gql.http.base_url)) as ws:
        await ws.subscribe("1", spread + doubling + " fragment S30 on Subscription { sagaFeed { sequence } }")
        (error,) = await ws.refusal("1")
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_a_repeated_document_is_validated_once(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[DocumentNode] = []

    def validate(schema: GraphQLSchema, document: DocumentNode, rules: Any) -> list[GraphQLError]:
        validated.append(document)
        return validate_document(schema, document, rules)

    monkeypatch.setattr(documents, "validate_document", validate)
    # A text no other test sends, so the first request is the cache's first sight of it.
    query = '{ stockLevels(sku: "VALIDATED-ONCE") { onHand } }'
    await gql(query)
    await gql(query)
    assert len(validated) == 1


async def test_a_document_longer_than_the_caches_take_is_parsed_once_and_kept_by_neither(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    validated: list[DocumentNode] = []

    def parse(source: Any, **options: Any) -> DocumentNode:
        parsed.append(str(source))
        return graphql_parse(source, **options)

    def validate(schema: GraphQLSchema, document: DocumentNode, rules: Any) -> list[GraphQLError]:
        validated.append(document)
        return validate_document(schema, document, rules)

    monkeypatch.setattr(strawberry_schema, "parse", parse)  # strawberry's own parse, not the cache's
    monkeypatch.setattr(documents, "validate_document", validate)
    parses = documents.cached_parse
    cached = (parses.cache_info().currsize, len(documents._VERDICTS))
    # Each entry keeps its text and tree: a thousand of up to a megabyte would hold gigabytes.
    padding = " " * documents.CACHED_CHARACTERS
    for _ in range(2):
        assert await gql("{ __typename" + padding + "}") == {"__typename": "Query"}
    failing = "{ __typename" + padding  # a syntax error: parsed by strawberry alone, not twice
    assert (await answer(gql.http, failing))["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert (parses.cache_info().currsize, len(documents._VERDICTS)) == cached
    assert len(parsed) == 3 and len(validated) == 2


async def test_an_answer_its_lists_would_multiply_past_the_limit_is_refused_before_it_runs(
    gql: GraphQLClient,
) -> None:
    # 100 ids (the same one will do), 30 aliases, an order's 100 lines: 1.2 KB and a million values,
    # which graphql-core completed in one pass of the event loop, seconds long.
    aliases = " ".join(f"a{n}: lines {{ sku quantity __typename }}" for n in range(30))
    query = f"query ($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on Order {{ {aliases} }} }} }}"
    body = await gql.http.post(
        "/graphql", json={"query": query, "variables": {"ids": ["T3JkZXI6eA=="] * 100}}
    )
    [error] = body.json()["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": "answer", "maximum": 50_000}
    assert error["message"].startswith("The answer may hold 1200100 values")
    # A full page of sagas with their orders' lines is within it (30,300 values); twice the lines is not.
    page = "{ sagas(first: 100) { edges { node { order { %s } } } } }"
    assert await gql(page % "lines { sku quantity }") == {"sagas": {"edges": []}}
    twice = too_complex(await answer(gql.http, page % "a: lines { sku quantity } b: lines { sku quantity }"))
    assert twice["limit"] == "answer"


async def test_aliases_of_a_list_sized_by_its_window_or_limit_are_refused_before_they_run(
    gql: GraphQLClient,
) -> None:
    window = 'since: "2026-01-01T00:00:00Z", until: "2026-01-02T00:00:00Z"'
    activity = " ".join(f"a{n}: sagaActivity({window}) {{ start completed failed }}" for n in range(30))
    attention = " ".join(
        f"a{n}: sagasNeedingAttention(limit: 200) {{ order {{ lines {{ sku }} }} }}" for n in range(30)
    )
    for document in (f"{{ {activity} }}", f"{{ {attention} }}"):
        assert too_complex(await answer(gql.http, document))["limit"] == "answer"
    # One of each is answered.
    assert len((await gql(f"{{ sagaActivity({window}) {{ start }} }}"))["sagaActivity"]) == 1440


async def test_variables_holding_more_values_than_the_limit_are_refused_before_coercion(
    gql: GraphQLClient,
) -> None:
    query = "query ($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    maximum = LIMITS[Limit.VARIABLES]
    # Nested as deep as the JSON goes: counted without recursion, whatever the variable's type.
    deep = "[" * 900 + "]" * 900
    for variables in (
        json.dumps({"ids": ["x"] * maximum}),
        '{"ids": [' + ", ".join([deep] * 12) + "]}",
        json.dumps({"ids": [], "more": [{"a": 1}] * maximum}),
    ):
        body = f'{{"query": {json.dumps(query)}, "variables": {variables}}}'
        response = await gql.http.post("/graphql", content=body, headers={"content-type": "application/json"})
        assert too_complex(response.json()) == {
            "code": "QUERY_TOO_COMPLEX",
            "limit": "variables",
            "maximum": maximum,
        }
    within = await gql.http.post("/graphql", json={"query": query, "variables": {"ids": ["x"] * 1000}})
    assert "errors" not in within.json() or within.json()["errors"][0]["extensions"]["code"] != (
        "QUERY_TOO_COMPLEX"
    )
