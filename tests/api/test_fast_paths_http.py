"""The same requests, served with the fast paths (`Settings.fast_paths`, `serve --no-fast-paths`) and
without them, get the same answers: over HTTP and over WebSocket subscriptions, on each database.
Without them, each of the shortcuts is seen to be off: every subscriber renders its own messages, and
the hot statements go through SQLAlchemy (with them, straight to sqlite3 or asyncpg)."""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from api.graphql import schema as graphql_schema
from api.graphql.edge.direct_execution import execute_directly
from api.settings import Settings
from api.web.graphql_http import GraphQLOverHTTP
from domain.model.saga import Participant, SagaPolicy
from persistence.database import make_engine
from persistence.tables import metadata
from tests.api.live import Live, saga_renderings, serve_live
from tests.api.subscriptions import subscriptions
from tests.integration.support import through_sqlalchemy

UPDATES = """subscription ($id: ID!) {
  sagaUpdates(sagaId: $id) { sequence type status step reason saga { id } } }"""
UPDATES_ABRIDGED = """subscription ($id: ID!) {
  sagaUpdates(sagaId: $id) { sequence status saga { failureReason } } }"""
PLACE = """mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) { saga { id status } userErrors { code field message } } }"""
SAGA = """query ($id: ID!) { saga(id: $id) {
  id status failureReason order { id status lines { sku quantity } shipment { picks { sku quantity } } }
  steps { name status attempts } events { sequence type status step reason } } }"""
STOCK = 'query { stockLevels(sku: "TEA") { warehouseCode sectionCode onHand reserved } }'
# What each HTTP request sends: its body. Each kind of answer a client may get, the same document
# more than once (what the caches keep), and the inputs coercion builds.
REQUESTS: list[dict[str, Any]] = [
    {"query": STOCK},
    {"query": STOCK},
    {"query": "{ saga(id: 1) { id } "},  # does not parse
    {"query": "{ saga { nope } }"},  # does not validate
    {"query": "query A { __typename } query B { __typename }"},  # no operationName
    {"query": "query A { __typename } query B { __typename }", "operationName": "B"},
    {"query": "{" + 'saga(id: "x") { order { ' * 14 + "id" + " } }" * 14 + "}"},  # too deep
    {
        "query": PLACE,
        "variables": {"input": {"customerId": "c-1", "lines": [{"sku": "TEA", "quantity": "2"}]}},
    },
    {"query": PLACE, "variables": {"input": {"customerId": "", "lines": []}}},
    {
        "query": PLACE,
        "variables": {
            "input": {
                "customerId": "c-1",
                "lines": [{"sku": "TEA", "quantity": 7}],
                "idempotencyKey": "short-1",
                "awaitOutcomeMs": 5000,
            }
        },
    },
]
ORDER = {"customerId": "c-2", "lines": [{"sku": "TEA", "quantity": 2}], "idempotencyKey": "k-1"}
# The default step timeouts: a step timed out on a loaded machine would change one run's transcript.
POLICY = SagaPolicy(retry_backoff=timedelta(milliseconds=50))
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _anonymous(transcript: Any) -> str:
    """The transcript with each id replaced by its order of appearance, which differs from run to run."""
    text = repr(transcript)
    seen: dict[str, str] = {}
    return _UUID.sub(lambda m: seen.setdefault(m.group(), f"<id {len(seen)}>"), text)


async def _converse(live: Live) -> list[Any]:
    """Every request of REQUESTS, then an order placed twice under one idempotency key and followed
    live by three subscribers (two with one selection); what each answer was."""
    transcript: list[Any] = []
    for body in REQUESTS:
        response = await live.gql.http.post("/graphql", json=body)
        transcript.append((response.status_code, response.json()))
    live.gate.hold(Participant.INVENTORY)
    placed = await live.gql(PLACE, input=ORDER)
    saga_id = placed["placeOrder"]["saga"]["id"]
    transcript += [placed, await live.gql(PLACE, input=ORDER)]  # the same request again: its first answer
    async with contextlib.AsyncExitStack() as sockets:
        clients = [await sockets.enter_async_context(subscriptions(live.url)) for _ in range(3)]
        for client, selection in zip(clients, (UPDATES, UPDATES, UPDATES_ABRIDGED), strict=True):
            await client.subscribe("updates", selection, id=saga_id)
            transcript.append(await client.next("updates"))  # the saga as it stands
        broken = await sockets.enter_async_context(subscriptions(live.url))
        await broken.subscribe("broken", "subscription { sagaFeed { ")
        transcript.append(await broken.refusal("broken"))
        live.gate.release(Participant.INVENTORY)
        transcript += [await client.until_complete("updates") for client in clients]
    transcript.append(await live.gql(SAGA, id=saga_id))
    transcript.append(await live.gql(STOCK))
    return transcript


async def _served(
    database_url: str, fast_paths: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, int, int, int, int]:
    """The anonymous transcript of `_converse`, the sagas rendered for its subscribers, the
    journal's INSERTs that went through SQLAlchemy, the POSTs answered without strawberry's `run`,
    and the operations executed without strawberry's `Schema.execute`."""
    settings = Settings(database_url=database_url, policy=POLICY, fast_paths=fast_paths)
    direct: list[object] = []
    executed_directly: list[object] = []
    run_post = GraphQLOverHTTP.run_post

    async def counted(view: GraphQLOverHTTP, request: Any) -> Any:
        direct.append(request)
        return await run_post(view, request)

    async def counted_execution(schema: Any, *args: Any, **kwargs: Any) -> Any:
        executed_directly.append(args)
        return await execute_directly(schema, *args, **kwargs)

    async with serve_live(settings) as live:
        with monkeypatch.context() as patched, through_sqlalchemy() as executed:
            rendered = saga_renderings(patched)
            patched.setattr(GraphQLOverHTTP, "run_post", counted)
            patched.setattr(graphql_schema, "execute_directly", counted_execution)
            transcript = await _converse(live)
    inserts = [statement for statement in executed if "INSERT INTO journal " in statement]
    return _anonymous(transcript), len(rendered), len(inserts), len(direct), len(executed_directly)


async def _emptied(url: str) -> str:
    """A database like `url` was before the first run: a new file on SQLite, its tables emptied on
    PostgreSQL."""
    if url.startswith("sqlite"):
        return url.replace(".db", "-again.db")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name != "alembic_version")
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    finally:
        await engine.dispose()
    return url


async def test_the_same_requests_get_the_same_answers_with_and_without_the_fast_paths(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, fast_renderings, fast_inserts, fast_posts, fast_direct = await _served(
        database_url, True, monkeypatch
    )
    plain, plain_renderings, plain_inserts, plain_posts, plain_direct = await _served(
        await _emptied(database_url), False, monkeypatch
    )

    assert plain == fast
    assert "BAD_REQUEST" in fast and "QUERY_TOO_COMPLEX" in fast and "COMPLETED" in fast
    # The shortcuts are off without the fast paths: two subscribers share a selection, and each
    # renders its own transitions; the journal is written through SQLAlchemy, not the driver directly;
    # every POST goes through strawberry's `run`, and every operation through its `Schema.execute`.
    assert plain_renderings > fast_renderings
    assert plain_inserts > 0
    assert fast_inserts == 0
    assert fast_posts > 0 and plain_posts == 0
    assert fast_direct > 0 and plain_direct == 0
