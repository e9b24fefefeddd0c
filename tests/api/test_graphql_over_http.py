"""GraphQL over HTTP as the specification draft says, over real HTTP: media types, request errors,
bodies that are not GraphQL requests, and graphql-http's conformance audits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cross_web import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from api.graphql.edge.document_limits import MAX_DOCUMENT_CHARACTERS
from api.service import Service
from api.settings import Settings
from api.web.app import create_app
from api.web.graphql_http import GRAPHQL_RESPONSE_JSON, GraphQLOverHTTP, response_media_type
from tests.api.server import TLS, serve
from tests.protocol.node import run_node

GRAPHQL_RESPONSE = {"accept": GRAPHQL_RESPONSE_JSON}
PROTOCOL = Path(__file__).parents[1] / "protocol"


@pytest.fixture(scope="module")
async def base_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The protocol does not depend on the database: one SQLite server for the module."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('http') / 'ordersaga.db'}"
    async with serve(Service(Settings(database_url=url))) as served:
        yield served


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as client:
        yield client


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, application/json", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=0", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=bad, application/json;q=0.1", "application/json"),
    ],
)
def test_the_answer_is_in_the_media_type_the_client_prefers(accept: str | None, expected: str) -> None:
    assert response_media_type(accept) == expected


async def test_a_query_answers_in_the_accepted_media_type(http: httpx.AsyncClient) -> None:
    modern = await http.post("/graphql", json={"query": "{ __typename }"}, headers=GRAPHQL_RESPONSE)
    legacy = await http.post("/graphql", json={"query": "{ __typename }"})
    assert modern.status_code == legacy.status_code == 200
    assert modern.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    assert legacy.headers["content-type"].startswith("application/json")
    assert modern.json() == legacy.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("query", ["{", "{ noSuchField }", "query ($n: Int!) { __typename }"])
async def test_a_request_error_is_400_without_data_when_graphql_response_json_is_accepted(
    http: httpx.AsyncClient, query: str
) -> None:
    modern = await http.post("/graphql", json={"query": query}, headers=GRAPHQL_RESPONSE)
    assert modern.status_code == 400
    assert "data" not in modern.json() and modern.json()["errors"]

    legacy = await http.post("/graphql", json={"query": query})
    assert legacy.status_code == 200
    assert legacy.json()["data"] is None and legacy.json()["errors"]


async def test_a_field_error_is_not_a_request_error(http: httpx.AsyncClient) -> None:
    answer = await http.post("/graphql", json={"query": "{ orders(first: -1) { edges { cursor } } }"})
    modern = await http.post(
        "/graphql", json={"query": "{ orders(first: -1) { edges { cursor } } }"}, headers=GRAPHQL_RESPONSE
    )
    assert answer.status_code == modern.status_code == 200
    assert "data" in modern.json() and modern.json()["errors"][0]["path"] == ["orders"]


DEEP = b"[" * 10_000 + b"]" * 10_000  # deeper than Python's JSON decoder can recurse
LONG_NUMBER = b"1" * 4301  # more digits than Python reads into an int


@pytest.mark.parametrize(
    "body",
    [
        *[b"42", b'"x"', b"null", b"true", b"{", b"\xff\xfe{}", b'{"query": "\xff"}'],
        pytest.param(DEEP, id="nested-too-deeply"),
        pytest.param(
            b'{"query": "{ __typename }", "variables": {"v": ' + DEEP + b"}}", id="variables-too-deep"
        ),
        pytest.param(
            b'{"query": "{ __typename }", "variables": {"v": ' + LONG_NUMBER + b"}}", id="number-too-long"
        ),
    ],
)
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE_JSON])
async def test_a_body_that_is_not_a_json_object_in_utf8_is_a_graphql_shaped_400(
    http: httpx.AsyncClient, body: bytes, accept: str
) -> None:
    answer = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json", "accept": accept}
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith(accept)
    [error] = answer.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert error["message"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_a_method_graphql_over_http_lacks_is_a_graphql_shaped_405(
    http: httpx.AsyncClient, method: str
) -> None:
    answer = await http.request(method, "/graphql", json={"query": "{ __typename }"})
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_mutation_over_get_is_refused_in_the_graphql_shape(http: httpx.AsyncClient) -> None:
    mutation = "mutation { clearParticipantFaults { faults { participant } } }"
    answer = await http.get("/graphql", params={"query": mutation})
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, POST"
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_several_operations_need_an_operation_name(http: httpx.AsyncClient) -> None:
    document = "query A { __typename } query B { b: __typename }"
    refused = await http.post("/graphql", json={"query": document})
    assert refused.status_code == 200
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "operationName" in error["message"]
    modern = await http.post("/graphql", json={"query": document}, headers=GRAPHQL_RESPONSE)
    assert modern.status_code == 400

    chosen = await http.post("/graphql", json={"query": document, "operationName": "B"})
    assert chosen.json() == {"data": {"b": "Query"}}


@pytest.mark.protocol
async def test_graphql_http_server_audits_all_pass(base_url: str) -> None:
    """The npm package graphql-http's serverAudits, the GraphQL-over-HTTP conformance suite."""
    output = await run_node(PROTOCOL / "audit-server.mjs", f"{base_url}/graphql")
    results = [json.loads(line) for line in output.splitlines()]
    assert len(results) > 50
    failing = [r for r in results if r["status"] != "ok"]
    assert failing == []


@pytest.mark.parametrize("parameter", ["variables", "extensions"])
async def test_a_get_whose_json_parameter_cannot_be_read_is_a_graphql_shaped_400(
    http: httpx.AsyncClient, parameter: str
) -> None:
    unreadable = '{"v": ' + LONG_NUMBER.decode() + "}"
    answer = await http.get("/graphql", params={"query": "{ __typename }", parameter: unreadable})
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_of_hundreds_of_kilobytes_within_the_limit_is_served(
    http: httpx.AsyncClient, chunked: bool
) -> None:
    # Past the header bound and a read: what bounds a header's bytes must not bound a body's.
    body = json.dumps({"query": "{ __typename }", "extensions": {"pad": "x" * 600_000}}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    content = pieces() if chunked else body
    answer = await http.post("/graphql", content=content, headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {"data": {"__typename": "Query"}}


async def test_a_document_longer_than_the_limit_is_refused_before_it_is_parsed(
    http: httpx.AsyncClient,
) -> None:
    # One token may hold the whole body: a block string of half a million lines took 0.3 s to lex.
    # (A GET's document is within the request line's bound, 32 KiB, already.)
    longest = "{ __typename }" + " " * (MAX_DOCUMENT_CHARACTERS - len("{ __typename }"))
    within = await http.post("/graphql", json={"query": longest})
    assert within.json() == {"data": {"__typename": "Query"}}
    answer = await http.post(
        "/graphql", json={"query": 'query { __typename } """' + "\n" * MAX_DOCUMENT_CHARACTERS}
    )
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert error["message"].startswith(f"The document holds more than {MAX_DOCUMENT_CHARACTERS} characters")


async def test_an_answer_writes_characters_past_ascii_as_utf8(http: httpx.AsyncClient) -> None:
    query = "query ($n: Int) { orders(first: $n) { edges { cursor } } }"
    answer = await http.post("/graphql", json={"query": query, "variables": {"n": "Grüße"}})
    [error] = answer.json()["errors"]  # the value refused is quoted
    assert "'Grüße'" in error["message"] and "'Grüße'".encode() in answer.content


TYPENAME = {"query": "{ __typename }"}
# POST requests of every kind a client may send: answered, refused before or during execution, not
# GraphQL over HTTP at all; each in both media types.
POSTS: list[tuple[bytes, str]] = [
    *[
        (json.dumps(body).encode(), "application/json")
        for body in (
            TYPENAME,
            TYPENAME | {"operationName": None, "variables": None, "extensions": {"x": 1}},
            {"query": "query A { a: __typename } query B { b: __typename }", "operationName": "B"},
            {"query": "query A { a: __typename } query B { b: __typename }"},
            {"query": "query A { __typename }", "operationName": "Missing"},
            {"query": "{"},
            {"query": "{ noSuchField }"},
            {"query": "query ($n: Int) { orders(first: $n) { edges { cursor } } }", "variables": {"n": "x"}},
            {"query": "{ orders(first: -1) { edges { cursor } } }"},
            {"query": "subscription { sagaFeed { sequence } }"},
            {"query": "mutation ($i: PlaceOrderInput!) { placeOrder(input: $i) { order { id } } }"},
            {"query": 'query { __typename } """' + "\n" * MAX_DOCUMENT_CHARACTERS},
            {},
            {"query": None},
            {"query": 5},
            TYPENAME | {"variables": "x"},
            TYPENAME | {"extensions": []},
            [TYPENAME],
        )
    ],
    (b"{", "application/json"),
    (b"42", "application/json"),
    (json.dumps(TYPENAME).encode(), "application/json; charset=utf-8"),
    (json.dumps(TYPENAME).encode(), "text/plain"),
    (json.dumps(TYPENAME).encode(), ""),
]


@pytest.fixture(scope="module")
async def view(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GraphQLOverHTTP]:
    svc = Service(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('view') / 'o.db'}"))
    [graphql] = [r.endpoint for r in create_app(svc).routes if isinstance(r, Route) and r.path == "/graphql"]
    await svc.start()
    try:
        yield graphql
    finally:
        await svc.stop()


def post(body: bytes, content_type: str, accept: str) -> Request:
    headers = [(b"accept", accept.encode())] + (
        [(b"content-type", content_type.encode())] if content_type else []
    )
    scope = {"type": "http", "method": "POST", "path": "/graphql", "query_string": b"", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def answered(run: Callable[[Request], Awaitable[Any]], request: Request) -> tuple[Any, ...]:
    try:
        response = await run(request)
    except HTTPException as refused:
        return refused.status_code, refused.reason
    return response.status_code, response.headers.raw, response.body


@pytest.mark.parametrize(("body", "content_type"), POSTS)
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE_JSON])
async def test_a_post_is_answered_as_strawberrys_run_answers_it(
    view: GraphQLOverHTTP, body: bytes, content_type: str, accept: str
) -> None:
    general = await answered(view.run, post(body, content_type, accept))
    assert await answered(view.run_post, post(body, content_type, accept)) == general


def test_the_view_answers_a_post_with_one_result_only(view: GraphQLOverHTTP) -> None:
    """What `run_post` leaves out of `run`: batches, HTTP streams, incremental delivery, uploads."""
    assert view.post_fast_path
    assert view.schema.config.batching_config is None
    assert not view.multipart_uploads_enabled
    assert not view.schema.config.enable_experimental_incremental_execution
    assert not set(view.protocols) & set(view.stream_transport_classes_by_protocol)
