"""Authentication and roles over WebSocket (graphql-transport-ws), on SQLite and PostgreSQL: the
token in connection_init in each shape clients send it, 4403 for a bad one, and customers who see
only their own sagas in sagaUpdates and sagaFeed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.values import OrderLine
from tests.api.live import saga_renderings
from tests.api.subscriptions import PROTOCOL, subscriptions, websocket_url
from tests.api.test_auth_http import place, stock
from tests.api.tokens import AUTH, CUSTOMER_A, CUSTOMER_B, Caller, Served, served, token
from tests.polling import eventually

UPDATES = "subscription ($id: ID!) { sagaUpdates(sagaId: $id) { sequence status saga { id } } }"
FEED = "subscription { sagaFeed { sequence status saga { id order { customerId } } } }"


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Served]:
    async with served(Settings(database_url=database_url, auth=AUTH)) as server:
        await stock(server.http)
        yield server


def _bearer(subject: str, role: str) -> str:
    return f"Bearer {token(subject, role)}"


@pytest.mark.parametrize(
    "shape",
    [
        lambda value: {"Authorization": value},
        lambda value: {"authorization": value},
        lambda value: {"headers": {"Authorization": value}},
        lambda value: {"headers": {"authorization": value}},
    ],
    ids=["Authorization", "authorization", "headers.Authorization", "headers.authorization"],
)
async def test_connection_init_carries_the_token_in_each_shape_clients_send(
    server: Served, shape: Any
) -> None:
    url, http = server.url, server.http
    placed = await place(Caller(http, CUSTOMER_A))
    async with subscriptions(url, shape(_bearer("customer-a", "customer"))) as client:
        await client.subscribe("1", UPDATES, id=placed["saga"]["id"])
        first = await client.next("1")
        assert first is not None and first["data"]["sagaUpdates"]["saga"]["id"] == placed["saga"]["id"]


@pytest.mark.parametrize("authorization", ["Bearer not.a.token", "Basic YWRtaW46YWRtaW4=", "Bearer "])
async def test_a_bad_token_in_connection_init_closes_the_socket_with_4403(
    server: Served, authorization: str
) -> None:
    url = server.url
    async with websockets.connect(websocket_url(url), subprotocols=[PROTOCOL]) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": authorization}}
        await socket.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_socket_without_a_token_is_answered_unauthenticated(server: Served) -> None:
    url = server.url
    async with subscriptions(url) as client:
        await client.subscribe("1", FEED)
        refused = await client.refusal("1")
    assert refused[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_another_customers_saga_is_unknown_to_saga_updates(server: Served) -> None:
    url, http = server.url, server.http
    placed = await place(Caller(http, CUSTOMER_A))
    async with subscriptions(url, {"Authorization": _bearer("customer-b", "customer")}) as client:
        await client.subscribe("1", UPDATES, id=placed["saga"]["id"])
        refused = await client.refusal("1")
    assert refused[0]["message"] == f"no saga with id {placed['saga']['id']}"
    async with subscriptions(url, {"Authorization": _bearer("operator-1", "operator")}) as client:
        await client.subscribe("1", UPDATES, id=placed["saga"]["id"])
        assert await client.next("1") is not None


async def test_the_feed_shows_a_customer_only_its_own_sagas_and_an_operator_all(
    server: Served,
) -> None:
    url, http = server.url, server.http
    a, b = Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B)
    init_b = {"Authorization": _bearer("customer-b", "customer")}
    init_operator = {"Authorization": _bearer("operator-1", "operator")}
    async with subscriptions(url, init_b) as feed_b, subscriptions(url, init_operator) as feed_operator:
        await feed_b.subscribe("b", FEED)
        await feed_operator.subscribe("o", FEED)
        await eventually(lambda: server.svc.subscribers == 2, "both feeds subscribed")
        theirs = await place(a)
        own = await place(b)
        seen_by_b = await _sagas_until_completed(feed_b, "b", own["saga"]["id"])
        assert seen_by_b == {own["saga"]["id"]}
        seen_by_operator = await _sagas_until_completed(feed_operator, "o", own["saga"]["id"])
        assert seen_by_operator == {theirs["saga"]["id"], own["saga"]["id"]}


async def test_a_transition_is_rendered_once_for_each_visibility_among_its_subscribers(
    server: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A customer's answer may differ from staff's (a saga's lease is staff's business), so the two
    # share no rendering; two subscribers who see alike share one.
    rendered = saga_renderings(monkeypatch)
    inits = [{"Authorization": _bearer(who, role)} for who, role in [("customer-b", "customer")] * 2] + [
        {"Authorization": _bearer(f"operator-{n}", "operator")} for n in (1, 2)
    ]
    async with contextlib.AsyncExitStack() as connections:
        feeds = [await connections.enter_async_context(subscriptions(server.url, init)) for init in inits]
        for feed in feeds:
            await feed.subscribe("f", FEED)
        await eventually(lambda: server.svc.subscribers == len(feeds), "every feed subscribed")
        # Placed past GraphQL, whose answer would render a saga of its own.
        placed = await server.svc.orchestrator.place_order(PlaceOrder("customer-b", (OrderLine("TEA", 1),)))
        for feed in feeds:
            assert await _sagas_until_completed(feed, "f", placed.saga_id) == {placed.saga_id}

    assert rendered == [placed.saga_id] * 7 * 2


async def _sagas_until_completed(client: Any, operation_id: str, last_saga: str) -> set[str]:
    """The sagas whose updates came, up to `last_saga`'s completion."""
    seen: set[str] = set()
    while True:
        payload = await client.next(operation_id)
        update = payload["data"]["sagaFeed"]
        seen.add(update["saga"]["id"])
        if update["saga"]["id"] == last_saga and update["status"] == "COMPLETED":
            return seen


async def test_the_rules_hold_for_every_operation_sent_over_the_socket(server: Served) -> None:
    async with subscriptions(server.url, {"Authorization": _bearer("customer-a", "customer")}) as client:
        await client.subscribe("1", "{ sagaMetrics { started } }")
        assert (await client.refusal("1"))[0]["extensions"]["code"] == "FORBIDDEN"
    async with subscriptions(server.url, {"Authorization": f"Bearer {token('nobody')}"}) as client:
        await client.subscribe("1", FEED)  # a valid token without a role may do nothing
        assert (await client.refusal("1"))[0]["extensions"]["code"] == "FORBIDDEN"
    async with subscriptions(server.url, {"Authorization": _bearer("admin-1", "admin")}) as client:
        await client.subscribe("1", "{ sagaMetrics { started } }")
        answer = await client.next("1")
        assert answer == {"data": {"sagaMetrics": {"started": 0}}}
