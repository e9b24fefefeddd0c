"""A WebSocket ends when its token does (no leeway here), on SQLite and PostgreSQL: at the token's
`exp` the socket closes with 4403 whether the client speaks or not, its feed stops, and nothing sent
after that runs; a `ping` carrying a fresh token for the same principal renews it, subscriptions and
all, and one that is not valid or is someone else's closes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import websockets

from api.access.auth import AuthConfig
from api.settings import Settings
from tests.api.subscriptions import SubscriptionClient, subscriptions, websocket_url
from tests.api.test_auth_http import PLACE, place, stock
from tests.api.tokens import CUSTOMER_A, SECRET, Caller, Served, served, token
from tests.polling import eventually
from tests.protocol.node import run_node

FEED = "subscription { sagaFeed { sequence status saga { id } } }"
ORDERS = "{ orders { edges { node { id } } } }"
SHORT = timedelta(seconds=2)
# Node takes a second or more to start on a busy machine: the reference client's first token must
# outlive its start, or it would be refused before it could renew.
NODE_SHORT = timedelta(seconds=8)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Served]:
    settings = Settings(database_url=database_url, auth=AuthConfig(secret=SECRET, leeway=timedelta(0)))
    async with served(settings) as server:
        await stock(server.http)
        yield server


def _ends(signed: str) -> datetime:
    return datetime.fromtimestamp(jwt.decode(signed, options={"verify_signature": False})["exp"], UTC)


async def _past(signed: str) -> None:
    """Wait until the token has expired by the wall clock."""
    end = _ends(signed)
    await eventually(lambda: datetime.now(UTC) >= end, "the token to expire")


async def _close(client: SubscriptionClient) -> tuple[int, list[object]]:
    """The code the server closes the socket with, and the messages that came before it."""
    messages: list[object] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                messages.append(json.loads(await client.socket.recv()))
    assert closed.value.rcvd is not None, "the server did not close the socket"
    return closed.value.rcvd.code, messages


async def test_the_socket_closes_4403_at_its_tokens_expiry_and_its_feed_stops(server: Served) -> None:
    short = token("customer-a", "customer", ttl=SHORT)
    async with subscriptions(server.url, {"Authorization": f"Bearer {short}"}) as client:
        await client.subscribe("feed", FEED)
        await eventually(lambda: server.svc.subscribers == 1, "the feed subscribed")
        code, _ = await _close(client)  # the client sends nothing meanwhile
    assert code == 4403
    assert datetime.now(UTC) >= _ends(short)
    await eventually(lambda: server.svc.subscribers == 0, "the feed to stop")


@pytest.mark.parametrize(
    "operation",
    [
        {"query": FEED},
        {"query": PLACE, "variables": {"input": {"lines": [{"sku": "TEA", "quantity": 1}]}}},
    ],
    ids=["subscription", "mutation"],
)
async def test_nothing_sent_after_expiry_runs(server: Served, operation: dict[str, object]) -> None:
    short = token("customer-a", "customer", ttl=SHORT)
    async with subscriptions(server.url, {"Authorization": f"Bearer {short}"}) as client:
        await _past(short)
        # The server may have closed the socket already, or closes it on reading this.
        with contextlib.suppress(websockets.ConnectionClosed):
            await client.socket.send(json.dumps({"id": "late", "type": "subscribe", "payload": operation}))
        code, messages = await _close(client)
    assert (code, messages) == (4403, [])
    assert server.svc.subscribers == 0
    assert (await Caller(server.http, CUSTOMER_A).data(ORDERS))["orders"]["edges"] == []


def _renewal(signed: str) -> str:
    return json.dumps({"type": "ping", "payload": {"authorization": f"Bearer {signed}"}})


async def test_a_ping_with_a_fresh_token_keeps_the_socket_and_its_feed_past_the_first_expiry(
    server: Served,
) -> None:
    short, fresh = (token("customer-a", "customer", ttl=ttl) for ttl in (SHORT, timedelta(minutes=5)))
    async with subscriptions(server.url, {"Authorization": f"Bearer {short}"}) as client:
        await client.subscribe("feed", FEED)
        await client.socket.send(_renewal(fresh))
        assert await client.pong() == {"expiresAt": _ends(fresh).isoformat()}
        await eventually(lambda: server.svc.subscribers == 1, "the feed subscribed")
        await _past(short)
        placed = await place(Caller(server.http, CUSTOMER_A))
        update = await client.next("feed")
        assert update is not None and update["data"]["sagaFeed"]["saga"]["id"] == placed["saga"]["id"]


@pytest.mark.parametrize(
    "renewal",
    [
        lambda: token("customer-b", "customer"),
        lambda: token("customer-a", "customer", "operator"),
        lambda: token("customer-a", "customer", ttl=timedelta(seconds=-1)),
        lambda: "not.a.token",
    ],
    ids=["another subject", "other roles", "expired", "malformed"],
)
async def test_a_renewal_that_is_not_valid_or_someone_elses_closes_the_socket(
    server: Served, renewal: Callable[[], str]
) -> None:
    init = {"Authorization": f"Bearer {token('customer-a', 'customer')}"}
    async with subscriptions(server.url, init) as client:
        await client.subscribe("feed", FEED)
        await eventually(lambda: server.svc.subscribers == 1, "the feed subscribed")
        await client.socket.send(_renewal(renewal()))
        code, messages = await _close(client)
    assert (code, messages) == (4403, [])
    await eventually(lambda: server.svc.subscribers == 0, "the feed to stop")


@pytest.mark.slow  # Node's reference client, past a token's expiry
async def test_the_reference_client_renews_through_its_socket(server: Served) -> None:
    short, fresh = (token("customer-a", "customer", ttl=ttl) for ttl in (NODE_SHORT, timedelta(minutes=5)))
    script = Path(__file__).parents[1] / "protocol" / "renew.mjs"
    printed = await run_node(
        script, websocket_url(server.url), f"Bearer {short}", f"Bearer {fresh}", _ends(short).isoformat()
    )
    pong, answer = (json.loads(line) for line in printed.splitlines())
    assert pong == {"pong": {"expiresAt": _ends(fresh).isoformat()}}
    assert answer == {"next": {"data": {"products": [{"sku": "TEA"}]}}}
