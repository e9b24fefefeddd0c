"""`execute_directly` (the fast paths' `EdgeSchema.execute`) answers as strawberry's `Schema.execute`
answers with the edge rules as its extension: the same data, errors and extensions, the same
exceptions raised, the same lines logged, for every kind of request the edge answers or refuses and
for every kind of caller."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from strawberry.extensions import MaskErrors
from strawberry.schema.config import StrawberryConfig
from strawberry.types.graphql import OperationType

from api.access.auth import DEVELOPER, KeysUnavailable, NotAuthenticated, Principal, Role
from api.demo import load_demo_catalog
from api.graphql.edge.direct_execution import answers_as_strawberry, execute_directly
from api.graphql.edge.document_limits import MAX_TOKENS
from api.graphql.edge.rules import EdgeRules
from api.graphql.schema import build_schema
from api.service import Service
from api.settings import Settings
from api.web.app import create_app
from api.web.graphql_http import GraphQLOverHTTP

Execute = Callable[..., Awaitable[Any]]
PLACE = """mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id status } saga { status } userErrors { code field message } } }"""
QUERY, MUTATION = {OperationType.QUERY}, {OperationType.QUERY, OperationType.MUTATION}
ORDER = {"lines": [{"sku": "TEA-GREEN", "quantity": 1}], "awaitOutcomeMs": 5000}
# (document, variables, operationName, allowed operation types): each kind of answer and refusal.
CASES: list[tuple[str | None, dict[str, Any] | None, str | None, set[OperationType] | None]] = [
    ("{ __typename }", None, None, None),
    ('{ products { sku name } stockLevels(sku: "TEA-GREEN") { onHand } }', None, None, None),
    ("query A { a: __typename } query B { b: __typename }", None, "B", None),
    ("query A { a: __typename } query B { b: __typename }", None, None, None),  # no operationName
    ("query A { __typename }", None, "Missing", None),  # raises: no such operation
    # Raises: a mutation where only queries are allowed (over GET).
    ('mutation { cancelOrder(input: {orderId: "x"}) { userErrors { code } } }', None, None, QUERY),
    (None, None, None, None),  # raises: no document
    ("{", None, None, None),  # does not parse
    ("{ noSuchField }", None, None, None),  # not valid
    ("{ " + "__typename " * MAX_TOKENS + "}", None, None, None),  # too many tokens to parse
    ("query ($n: Int) { orders(first: $n) { edges { cursor } } }", {"n": "x"}, None, None),  # coercion
    ("{ orders(first: -1) { edges { cursor } } }", None, None, None),  # a field's error
    ("{" + 'saga(id: "x") { order { ' * 14 + "id" + " } }" * 14 + "}", None, None, None),  # too deep
    ('{ order(id: "a\\u0000b") { id } }', None, None, None),  # unstorable text, a query's
    ("subscription { sagaFeed { sequence } }", None, None, None),  # over HTTP
    ("{ participantFaults { participant } }", None, None, None),  # admins only
    (PLACE, {"input": {"lines": [{"sku": "NO-SUCH", "quantity": 1}]}}, None, MUTATION),
    (PLACE, {"input": {"lines": [{"sku": "TEA-GREEN\u0000", "quantity": 1}]}}, None, MUTATION),
    (PLACE, {"input": {"lines": []}}, None, MUTATION),
    (PLACE, {"input": ORDER}, None, MUTATION),
]
CALLERS: list[Principal | NotAuthenticated] = [
    DEVELOPER,
    Principal("customer-1", frozenset({Role.CUSTOMER})),
    Principal("operator-1", frozenset({Role.OPERATOR})),
    NotAuthenticated("no token"),
    KeysUnavailable("the identity provider's keys cannot be fetched"),
]
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|instance=\S+")


def _anonymous(outcome: Any) -> str:
    """The outcome with each id (of an order, a saga, an error) replaced by its order of appearance."""
    seen: dict[str, str] = {}
    return _ID.sub(lambda m: seen.setdefault(m.group(), f"<id {len(seen)}>"), repr(outcome))


@pytest.fixture(scope="module")
async def svc(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    database = tmp_path_factory.mktemp("direct") / "o.db"
    service = Service(Settings(database_url=f"sqlite+aiosqlite:///{database}", mutation_limits="3/minute"))
    await service.start()
    await load_demo_catalog(service)
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture(scope="module")
def view(svc: Service) -> GraphQLOverHTTP:
    [graphql] = [r.endpoint for r in create_app(svc).routes if isinstance(r, Route) and r.path == "/graphql"]
    assert isinstance(graphql, GraphQLOverHTTP)
    return graphql


async def outcome(
    execute: Execute,
    view: GraphQLOverHTTP,
    caplog: pytest.LogCaptureFixture,
    case: tuple[str | None, dict[str, Any] | None, str | None, set[OperationType] | None],
    caller: Principal | NotAuthenticated,
) -> str:
    """What `execute` made of `case` for `caller`: its result or the exception it raised, and the
    lines it logged."""
    query, variables, operation_name, allowed = case
    scope = {"type": "http", "method": "POST", "path": "/graphql", "query_string": b"", "headers": []}
    request = Request(scope)
    context = await view.get_context(request, response=Response())
    context["identity"] = caller
    caplog.clear()
    try:
        result = await execute(view.schema, query, variables, context, None, operation_name, allowed, None)
    except Exception as raised:
        answer: Any = (type(raised), str(raised))
    else:
        answer = (result.data, [error.formatted for error in result.errors or ()], result.extensions)
    return _anonymous((answer, [(r.levelname, r.getMessage()) for r in caplog.records]))


def test_the_fast_paths_execute_directly() -> None:
    assert build_schema(True).direct_execution
    assert not build_schema(False).direct_execution


@pytest.mark.parametrize("case", CASES, ids=lambda case: repr(case)[:60])
@pytest.mark.parametrize("caller", CALLERS, ids=repr)
async def test_an_operation_is_answered_as_strawberry_answers_it(
    view: GraphQLOverHTTP, caplog: pytest.LogCaptureFixture, case: Any, caller: Any
) -> None:
    caplog.set_level(logging.INFO)
    if isinstance(caller, Principal):
        # Each its own caller, so that neither's mutations count against the other's rate limit.
        general_caller, direct_caller = (Principal(f"{caller.subject}-{side}", caller.roles) for side in "ab")
    else:
        general_caller = direct_caller = caller
    general = await outcome(strawberry.Schema.execute, view, caplog, case, general_caller)
    assert await outcome(execute_directly, view, caplog, case, direct_caller) == general


async def test_an_internal_error_is_masked_and_logged_alike(
    svc: Service, view: GraphQLOverHTTP, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(skus: list[str]) -> set[str]:
        raise RuntimeError("the catalog cannot be read")

    monkeypatch.setattr(svc.catalog, "known_skus", failing)
    case = (PLACE, {"input": {"lines": [{"sku": "TEA-GREEN", "quantity": 1}]}}, None, MUTATION)
    general = await outcome(strawberry.Schema.execute, view, caplog, case, DEVELOPER)
    assert "INTERNAL_SERVER_ERROR" in general and "the catalog cannot be read" in general
    assert await outcome(execute_directly, view, caplog, case, DEVELOPER) == general


async def test_mutations_past_the_rate_limit_are_refused_alike(
    view: GraphQLOverHTTP, caplog: pytest.LogCaptureFixture
) -> None:
    case = ('mutation { cancelOrder(input: {orderId: "x"}) { userErrors { code } } }', None, None, MUTATION)
    sides = {}
    for execute, subject in ((strawberry.Schema.execute, "limited-a"), (execute_directly, "limited-b")):
        caller = Principal(subject, frozenset({Role.CUSTOMER}))
        sides[execute] = [await outcome(execute, view, caplog, case, caller) for _ in range(4)]
    general, direct = sides.values()
    assert "RATE_LIMITED" in general[-1] and "RATE_LIMITED" not in general[0]
    assert direct == general


def test_only_a_schema_with_the_edge_rules_alone_is_executed_directly() -> None:
    """What `execute_directly` stands in for: the edge rules as the schema's one extension, no
    directives of its own (strawberry would add an extension for them), no incremental delivery.
    Built otherwise, a schema is executed by strawberry."""

    @strawberry.type
    class Query:
        answer: int = 42

    edge = functools.partial(EdgeRules, fast_paths=True)
    assert answers_as_strawberry(build_schema(True))
    assert answers_as_strawberry(strawberry.Schema(query=Query, extensions=[edge]))
    assert not answers_as_strawberry(strawberry.Schema(query=Query))
    slow = functools.partial(EdgeRules, fast_paths=False)
    assert not answers_as_strawberry(strawberry.Schema(query=Query, extensions=[slow]))
    assert not answers_as_strawberry(strawberry.Schema(query=Query, extensions=[edge, MaskErrors]))
    assert not answers_as_strawberry(strawberry.Schema(query=Query, extensions=[MaskErrors]))
    incremental = StrawberryConfig(enable_experimental_incremental_execution=True)
    assert not answers_as_strawberry(strawberry.Schema(query=Query, extensions=[edge], config=incremental))
