"""graphql-transport-ws as its reference server speaks it, over a real WebSocket: malformed messages
close the socket with 4400, a document that fails before execution gets an `error` message, and the
reference client (graphql-ws, from node) subscribes, receives and completes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st

from api.graphql.edge.document_limits import MAX_DOCUMENT_CHARACTERS
from api.settings import Settings
from api.web.graphql_ws import close_reason, protocol_violation
from domain.model.saga import Participant
from tests.api.live import Live, serve_live
from tests.api.subscriptions import PROTOCOL, subscriptions, websocket_url
from tests.protocol.node import run_node

SUBSCRIBE_SCRIPT = Path(__file__).parents[1] / "protocol" / "subscribe.mjs"
FEED = "subscription { sagaFeed { sequence } }"
UPDATES = "subscription ($id: ID!) { sagaUpdates(sagaId: $id) { sequence status } }"


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """The protocol does not depend on the database: one SQLite server for the module."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ws') / 'ordersaga.db'}"
    async with serve_live(Settings(database_url=url)) as served:
        yield served


def subscribe(id: Any = "1", **payload: Any) -> Any:
    return {"type": "subscribe", "id": id, "payload": payload}


MALFORMED = [
    None,
    [],
    42,
    "subscribe",
    {},
    {"type": 7},
    {"type": "ping", "payload": 5},
    {"type": "ping", "payload": []},
    {"type": "pong", "payload": "x"},
    subscribe(id="", query=FEED),
    subscribe(id=5, query=FEED),
    {"type": "subscribe", "payload": {"query": FEED}},
    {"type": "subscribe", "id": "1"},
    {"type": "subscribe", "id": "1", "payload": []},
    subscribe(query=5),
    subscribe(query=None),
    subscribe(query=FEED, variables=5),
    subscribe(query=FEED, variables=[]),
    subscribe(query=FEED, operationName=5),
    subscribe(query=FEED, extensions="x"),
    {"type": "complete", "id": ""},
    {"type": "next", "id": "1", "payload": {}},
]


@pytest.mark.parametrize("message", MALFORMED, ids=json.dumps)
async def test_a_malformed_message_closes_the_socket_with_4400(live: Live, message: Any) -> None:
    async with subscriptions(live.url) as client:
        await client.socket.send(json.dumps(message))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await client.socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert closed.value.rcvd.reason


@pytest.mark.parametrize(
    "message",
    ["[" * 10_000 + "]" * 10_000, '{"type": "ping", "payload": {"n": ' + "1" * 4301 + "}}"],
    ids=["nested-past-its-depth", "a-number-of-more-digits-than-python-reads"],
)
async def test_json_the_decoder_cannot_read_closes_the_socket_with_4400(live: Live, message: str) -> None:
    async with subscriptions(live.url) as client:
        await client.socket.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await client.socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


@pytest.mark.parametrize(
    "message",
    [
        {"type": "ping"},
        {"type": "ping", "payload": None},
        {"type": "pong", "payload": {"at": 1}},
        subscribe(query=FEED, variables=None, operationName=None, extensions={}),
    ],
    ids=json.dumps,
)
def test_well_formed_messages_pass(message: Any) -> None:
    assert protocol_violation(message) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
MESSAGE_TYPES = st.sampled_from(["connection_init", "ping", "pong", "subscribe", "complete", "next"])


@given(JSON | st.fixed_dictionaries({"type": MESSAGE_TYPES}, optional={"id": JSON, "payload": JSON}))
def test_any_json_value_is_a_message_or_a_reason(value: Any) -> None:
    violation = protocol_violation(value)
    if violation is None:
        assert isinstance(value, dict) and isinstance(value["type"], str)
    else:
        assert isinstance(violation, str) and violation


def test_a_close_reason_fits_a_close_frame() -> None:
    reason = close_reason("é" * 200)
    assert len(reason.encode()) <= 123 and reason == "é" * 61


async def expect_error(live: Live, query: str) -> list[dict[str, Any]]:
    """The payload of the `error` message answering a subscribe of `query`; the socket stays open."""
    async with subscriptions(live.url) as client:
        await client.socket.send(json.dumps(subscribe(query=query)))
        async with asyncio.timeout(5):
            answer = json.loads(await client.socket.recv())
        await client.socket.send(json.dumps({"type": "ping"}))
        async with asyncio.timeout(5):
            assert json.loads(await client.socket.recv()) == {"type": "pong"}
    assert answer["type"] == "error" and answer["id"] == "1", answer
    return answer["payload"]  # type: ignore[no-any-return]


async def test_a_document_that_does_not_parse_gets_an_error_with_the_syntax_error(live: Live) -> None:
    [error] = await expect_error(live, "subscription {")
    assert error["message"].startswith("Syntax Error")


async def test_a_document_with_several_operations_and_no_name_gets_an_error(live: Live) -> None:
    [error] = await expect_error(live, "subscription A { sagaFeed { sequence } } query B { __typename }")
    assert error["extensions"]["code"] == "BAD_REQUEST"


async def test_an_unknown_operation_name_gets_an_error(live: Live) -> None:
    async with subscriptions(live.url) as client:
        await client.socket.send(json.dumps(subscribe(query=FEED, operationName="Missing")))
        async with asyncio.timeout(5):
            answer = json.loads(await client.socket.recv())
    assert answer["type"] == "error" and "Missing" in answer["payload"][0]["message"]


async def test_an_operation_id_that_is_not_unicode_is_answered(live: Live) -> None:
    # Every message of an operation echoes its id; one holding a lone surrogate is written escaped,
    # as the standard library writes it (orjson, which writes the others, refuses it).
    async with subscriptions(live.url) as client:
        await client.socket.send(json.dumps(subscribe(id="a\ud800b", query="{ __typename }")))
        async with asyncio.timeout(5):
            answer = await client.socket.recv()
    assert "a\\ud800b" in answer and json.loads(answer)["payload"] == {"data": {"__typename": "Query"}}


async def run_reference_client(live: Live, query: str, **variables: Any) -> list[dict[str, Any]]:
    output = await run_node(SUBSCRIBE_SCRIPT, websocket_url(live.url), query, json.dumps(variables))
    return [json.loads(line) for line in output.splitlines()]


@pytest.mark.protocol
async def test_the_reference_client_subscribes_receives_and_completes(live: Live) -> None:
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(1)
    following = asyncio.create_task(run_reference_client(live, UPDATES, id=saga_id))
    await live.until_subscribed(1)
    live.gate.release(Participant.INVENTORY)
    events = await following

    assert events[-1] == {"complete": True}
    updates = [e["next"]["data"]["sagaUpdates"] for e in events[:-1]]
    # The saga's newest transition when the subscription read it, then every later one: the saga is
    # released once the server holds the subscriber, which may be before it has read the newest.
    first = updates[0]["sequence"]
    assert first >= 2 and [u["sequence"] for u in updates] == list(range(first, 8))
    assert updates[-1]["status"] == "COMPLETED"


@pytest.mark.protocol
async def test_the_reference_client_is_told_of_a_syntax_error(live: Live) -> None:
    [event] = await run_reference_client(live, "subscription {")
    [error] = event["error"]
    assert error["message"].startswith("Syntax Error")


async def test_a_socket_that_speaks_the_protocol_is_unaffected(live: Live) -> None:
    async with websockets.connect(websocket_url(live.url), subprotocols=[PROTOCOL]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"token": "x"}}))
        async with asyncio.timeout(5):
            assert json.loads(await socket.recv()) == {"type": "connection_ack"}
        await socket.send(json.dumps(subscribe(query="{ __typename }")))
        async with asyncio.timeout(5):
            assert json.loads(await socket.recv())["payload"] == {"data": {"__typename": "Query"}}
            assert json.loads(await socket.recv()) == {"id": "1", "type": "complete"}


async def test_an_operation_past_the_sockets_limit_is_refused_with_a_code_and_the_others_go_on(
    live: Live,
) -> None:
    async with subscriptions(live.url) as client:
        for n in range(100):  # strawberry's limit of operations running at once on one socket
            await client.subscribe(str(n), FEED)
        await client.subscribe("one-too-many", FEED)
        [error] = await client.refusal("one-too-many")
        assert error["extensions"] == {"code": "TOO_MANY_OPERATIONS", "maximum": 100}
        # Once one completes, there is room again.
        await client.socket.send(json.dumps({"id": "0", "type": "complete"}))
        await client.subscribe("room-again", "{ __typename }")
        assert await client.next("room-again") == {"data": {"__typename": "Query"}}


async def test_a_subscribe_whose_document_is_too_long_is_refused_and_the_socket_goes_on(live: Live) -> None:
    async with subscriptions(live.url) as client:
        await client.subscribe(
            "long", "subscription { sagaFeed { sequence } }" + " " * MAX_DOCUMENT_CHARACTERS
        )
        [error] = await client.refusal("long")
        assert error["extensions"] == {"code": "BAD_REQUEST"}
        await client.subscribe("short", "{ __typename }")
        assert await client.next("short") == {"data": {"__typename": "Query"}}
