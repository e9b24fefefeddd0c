"""Webhooks across real `ordersaga serve` processes killed with SIGKILL: a server killed while a delivery
is on the wire (the receiver holds the request) sends it again once restarted, under the same
webhook-id, and every event reaches the receiver in journal order per saga; with two and three
processes over PostgreSQL, one process drives the endpoint at a time, and when the one that does is
killed mid-delivery another takes its relay over. The receiver verifies every request with the
`standardwebhooks` package."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from persistence.database import make_engine
from persistence.tables import relays
from persistence.webhooks import relay_name
from tests.api.server import GraphQLClient, place, stock
from tests.crash.server_process import ServerProcess, ordersaga_serve
from tests.crash.test_sigkill import FAST_RETRIES, wait_until_all_finished
from tests.integration.support import logged_events
from tests.polling import eventually
from tests.receiver import Receiver

CREATE = """
mutation ($url: String!) {
  createWebhookEndpoint(input: {url: $url}) { endpoint { id } secret userErrors { code } }
}
"""
LEASE_TTL = 1.5


async def register(gql: GraphQLClient, receiver: Receiver) -> str:
    payload = (await gql(CREATE, url=receiver.url))["createWebhookEndpoint"]
    assert payload["userErrors"] == []
    receiver.secret = payload["secret"]
    return str(payload["endpoint"]["id"])


def held_id(receiver: Receiver) -> str:
    """The event id of the request the receiver holds (the only one on the wire)."""
    data = json.loads(receiver.arrivals[-1])["data"]
    return f"evt_{data['sagaId']}_{data['sequence']}"


async def test_a_server_killed_mid_delivery_sends_it_again_after_a_restart(database_url: str) -> None:
    receiver = Receiver()
    receiver.held = asyncio.Event()
    async with receiver.running():
        async with ordersaga_serve(database_url, *FAST_RETRIES) as server:
            await stock(server.gql)
            await register(server.gql, receiver)
            placed = await place(server.gql, 1)
            await asyncio.wait_for(receiver.arrived.wait(), 20)
            # The delivery is held on the wire, and the saga went on without waiting for it.
            await server.gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
            on_the_wire = held_id(receiver)
            await server.kill()
            secret = receiver.secret
            assert secret is not None and not any(secret in line for line in server.output)
        receiver.held.set()  # the receiver answers into a closed connection: the server never heard
        await eventually(lambda: on_the_wire in receiver.taken_ids(), "the held request to be answered")
        async with ordersaga_serve(database_url, *FAST_RETRIES) as server:
            await place(server.gql, 1)
            await wait_until_all_finished(database_url)
            await receiver.wait_for(
                {event.event_id for event in await logged_events(database_url)}, seconds=30
            )
        # A delivery is not a log line: the deliveries' records tell them, no client's INFO lines do.
        assert not any("HTTP Request:" in line for line in server.output)
        assert [r.id for r in receiver.taken].count(on_the_wire) == 2  # sent again, under the same id
        receiver.check_order()


@contextlib.asynccontextmanager
async def fleet(database_url: str, size: int) -> AsyncIterator[list[ServerProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        servers = await asyncio.gather(
            *(
                stack.enter_async_context(
                    ordersaga_serve(database_url, f"--lease-ttl={LEASE_TTL}", *FAST_RETRIES)
                )
                for _ in range(size)
            )
        )
        yield list(servers)


async def relay_owner(database_url: str, endpoint_id: str) -> str | None:
    engine = make_engine(database_url, writer=False)
    try:
        async with engine.connect() as conn:
            query = select(relays.c.owner).where(relays.c.name == relay_name(endpoint_id))
            return (await conn.execute(query)).scalar_one_or_none()
    finally:
        await engine.dispose()


def instance_of(server: ServerProcess) -> str:
    return f"{socket.gethostname()}:{server.process.pid}"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("size", [2, 3])
async def test_one_process_drives_an_endpoint_and_another_takes_over_when_it_dies(
    database_url: str, size: int
) -> None:
    receiver = Receiver()
    async with receiver.running(), fleet(database_url, size) as servers:
        await stock(servers[0].gql, quantity=100)
        endpoint_id = await register(servers[0].gql, receiver)
        # Orders placed on every process: their events reach the endpoint from the one that drives it.
        await asyncio.gather(*(place(server.gql, 1, customerId=f"c{n}") for n, server in enumerate(servers)))
        await wait_until_all_finished(database_url)
        await receiver.wait_for({event.event_id for event in await logged_events(database_url)}, seconds=30)
        assert len({r.id for r in receiver.taken}) == len(receiver.taken)  # one sender: no repeats

        # The process driving the endpoint is killed while a delivery is on the wire.
        receiver.held = asyncio.Event()
        receiver.arrived.clear()
        await place(servers[0].gql, 1, customerId="held")
        await asyncio.wait_for(receiver.arrived.wait(), 20)
        on_the_wire = held_id(receiver)
        owner = await relay_owner(database_url, endpoint_id)
        [driver] = [server for server in servers if instance_of(server) == owner]
        survivors = [server for server in servers if server is not driver]
        await driver.kill()
        receiver.held.set()
        await asyncio.gather(*(place(server.gql, 1, customerId="after") for server in survivors))
        await wait_until_all_finished(database_url)
        await receiver.wait_for({event.event_id for event in await logged_events(database_url)}, seconds=30)
        receiver.check_order()
        assert [r.id for r in receiver.taken].count(on_the_wire) == 2  # sent again, under the same id
        assert await relay_owner(database_url, endpoint_id) in {instance_of(s) for s in survivors}
