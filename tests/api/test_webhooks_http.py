"""Webhooks over real HTTP, on SQLite and PostgreSQL, to a real receiver on loopback that verifies every
request with the `standardwebhooks` package: every event delivered and verified, in journal order per
saga, with stable ids; a receiver that fails or is down, then back; deliveries listed and redelivered;
endpoints disabled after their failing window but not after a short outage; only subscribed types."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from api.service import Service
from api.settings import Settings
from persistence.read.event_log import decode_cursor
from tests.api.server import GraphQLClient, graphql_client, place, serve_app, stock
from tests.integration.support import FAST, logged_events
from tests.polling import eventually
from tests.receiver import Receiver

CREATE = """
mutation ($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    endpoint { id url events enabled } secret userErrors { code field message }
  }
}
"""
UPDATE = """
mutation ($input: UpdateWebhookEndpointInput!) {
  updateWebhookEndpoint(input: $input) {
    endpoint { id url events enabled disabledReason failingSince } secret userErrors { code field }
  }
}
"""
ENDPOINTS = "{ webhookEndpoints { id url events description enabled disabledReason failingSince } }"
DELIVERIES = """
query (
  $id: ID!, $status: [WebhookDeliveryStatus!], $first: Int, $after: String, $last: Int, $before: String
) {
  webhookDeliveries(
    endpointId: $id, status: $status, first: $first, after: $after, last: $last, before: $before
  ) {
    edges { cursor node {
      eventId eventType sagaId cursor status attempts responseCode latencyMs error nextAttemptAt
    } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
STAGE_FAULT = """
mutation ($input: SetParticipantFaultInput!) { setParticipantFault(input: $input) { userErrors { code } } }
"""
DELETE = "mutation ($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedId userErrors { code } } }"
REDELIVER = """
mutation ($input: RedeliverWebhooksInput!) {
  redeliverWebhooks(input: $input) { redelivered userErrors { code field } }
}
"""


@contextlib.asynccontextmanager
async def served(database_url: str, **settings: Any) -> AsyncIterator[GraphQLClient]:
    """A service in development mode (so loopback receivers are allowed), holding 5 TEA."""
    svc = Service(Settings(database_url=database_url, policy=FAST, **settings))
    async with graphql_client(svc, timeout=30) as gql:
        await stock(gql)
        yield gql


async def subscribe(gql: GraphQLClient, receiver: Receiver, **input: Any) -> str:
    """Register `receiver` (for every event type unless `input` says otherwise); its endpoint id."""
    payload = (await gql(CREATE, input={"url": receiver.url, **input}))["createWebhookEndpoint"]
    assert payload["userErrors"] == []
    assert payload["secret"].startswith("whsec_")
    receiver.secret = payload["secret"]
    return str(payload["endpoint"]["id"])


async def settled_orders(gql: GraphQLClient, count: int) -> list[str]:
    """Place `count` orders of one TEA each and wait until their sagas settle; their saga ids."""
    placed = await asyncio.gather(*(place(gql, 1) for _ in range(count)))
    saga_ids = [answer["saga"]["id"] for answer in placed]
    for saga_id in saga_ids:
        await gql.wait_for_saga(saga_id, "COMPLETED", "FAILED")
    return saga_ids


async def journal(database_url: str) -> list[dict[str, Any]]:
    """Every journal event as it is sent (its payload), by position."""
    return [json.loads(event.payload()) for event in await logged_events(database_url)]


def ids_of(payloads: list[dict[str, Any]]) -> set[str]:
    return {f"evt_{p['data']['sagaId']}_{p['data']['sequence']}" for p in payloads}


async def deliveries(gql: GraphQLClient, endpoint_id: str, **arguments: Any) -> list[dict[str, Any]]:
    found = (await gql(DELIVERIES, id=endpoint_id, **arguments))["webhookDeliveries"]
    return [edge["node"] for edge in found["edges"]]


async def settled_deliveries(gql: GraphQLClient, endpoint_id: str) -> list[dict[str, Any]]:
    """The endpoint's deliveries once none is PENDING any more (or as they are after 10 s)."""
    for _ in range(200):
        found = await deliveries(gql, endpoint_id)
        if all(d["status"] != "PENDING" for d in found):
            return found
        await asyncio.sleep(0.05)
    return found


async def stored_for(
    gql: GraphQLClient, endpoint_id: str, count: int, **arguments: Any
) -> list[dict[str, Any]]:
    """The endpoint's deliveries, once there are `count` of them (the relay stores them as it goes)."""
    for _ in range(400):
        found = await deliveries(gql, endpoint_id, **arguments)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} deliveries were not stored: {found}")


async def test_every_event_is_delivered_signed_in_saga_order_with_its_stable_id(database_url: str) -> None:
    receiver = Receiver()
    async with receiver.running(), served(database_url) as gql:
        await subscribe(gql, receiver)
        await settled_orders(gql, 6)
        sent = await journal(database_url)
        await receiver.wait_for(ids_of(sent))
        receiver.check_order()
        # What arrived is exactly the journal's wire form, event by event, under the event's own id.
        by_id = {r.id: r.payload for r in receiver.taken}
        for payload in sent:
            assert by_id[f"evt_{payload['data']['sagaId']}_{payload['data']['sequence']}"] == payload
        # Nothing was stored: every event went through at the first attempt.
        endpoint_id = (await gql(ENDPOINTS))["webhookEndpoints"][0]["id"]
        assert await deliveries(gql, endpoint_id) == []


async def test_an_endpoint_gets_only_the_event_types_it_subscribed_to(database_url: str) -> None:
    everything, starts = Receiver(), Receiver()
    async with everything.running(), starts.running(), served(database_url) as gql:
        await subscribe(gql, everything)
        await subscribe(gql, starts, events=["SagaStarted", "ShipmentDispatched"])
        await settled_orders(gql, 2)
        sent = await journal(database_url)
        await everything.wait_for(ids_of(sent))
        await starts.wait_for(ids_of([p for p in sent if p["type"] == "SagaStarted"]))
        await asyncio.sleep(0.5)  # would anything else still arrive?
        assert {r.payload["type"] for r in starts.received} == {"SagaStarted"}


@pytest.mark.slow
async def test_a_receiver_that_fails_then_recovers_gets_every_event_with_the_same_id_again(
    database_url: str,
) -> None:
    receiver = Receiver()
    receiver.answer = 503
    async with receiver.running(), served(database_url) as gql:
        endpoint_id = await subscribe(gql, receiver)
        [saga_id] = await settled_orders(gql, 1)
        sent = await journal(database_url)
        # The first event failed and was stored with the attempt; the saga's later events wait behind it.
        stored = await stored_for(gql, endpoint_id, len(sent))
        first = f"evt_{saga_id}_1"
        assert stored[-1]["eventId"] == first
        assert stored[-1]["status"] == "PENDING"
        assert stored[-1]["responseCode"] == 503
        assert stored[-1]["error"] == "answered 503"
        assert stored[-1]["nextAttemptAt"] is not None
        assert all(d["attempts"] == 0 and d["nextAttemptAt"] is None for d in stored[:-1])
        # Nothing later was sent before it went through (it may have been retried already).
        assert {r.id for r in receiver.received} == {first}
        await eventually(lambda: len(receiver.received) >= 2, "a retry", seconds=10)
        receiver.answer = 200
        await receiver.wait_for(ids_of(sent), seconds=30)
        receiver.check_order()
        assert {r.id for r in receiver.received if r.status == 503} == {first}
        # The round stores its outcomes once its requests were answered: a moment after the receiver.
        done = await settled_deliveries(gql, endpoint_id)
        assert {d["status"] for d in done} == {"SUCCEEDED"}
        assert {d["eventId"] for d in done} == ids_of(sent)


async def test_a_receiver_down_then_up_is_caught_up(database_url: str) -> None:
    receiver = Receiver()
    async with served(database_url) as gql:
        endpoint_id = await subscribe(gql, receiver)  # nothing listens on its port yet
        await settled_orders(gql, 2)
        stored = await stored_for(gql, endpoint_id, len(await journal(database_url)))
        assert all(d["status"] == "PENDING" for d in stored)
        assert any(d["error"] and "Connect" in d["error"] for d in stored)  # refused, or timed out
        async with receiver.running():
            sent = await journal(database_url)
            await receiver.wait_for(ids_of(sent), seconds=30)
            receiver.check_order()
        # The round that delivered them notes the endpoint's health once it has stored them.
        for _ in range(100):
            if (await gql(ENDPOINTS))["webhookEndpoints"][0]["failingSince"] is None:
                break
            await asyncio.sleep(0.05)
        assert (await gql(ENDPOINTS))["webhookEndpoints"][0]["failingSince"] is None


@pytest.mark.slow
async def test_an_endpoint_failing_for_its_whole_window_is_disabled_and_redelivery_sends_again(
    sqlite_url: str,
) -> None:
    receiver = Receiver()
    receiver.answer = 500
    async with receiver.running(), served(sqlite_url, webhook_disable_after=timedelta(seconds=3)) as gql:
        endpoint_id = await subscribe(gql, receiver)
        await settled_orders(gql, 1)

        async def disabled() -> dict[str, Any]:
            for _ in range(300):
                endpoint = (await gql(ENDPOINTS))["webhookEndpoints"][0]
                if not endpoint["enabled"]:
                    return dict(endpoint)
                await asyncio.sleep(0.05)
            raise AssertionError("the endpoint was not disabled")

        endpoint = await disabled()
        assert endpoint["disabledReason"].startswith("no delivery succeeded since")
        assert "answered 500" in endpoint["disabledReason"]
        stored = await deliveries(gql, endpoint_id)
        assert {d["status"] for d in stored} == {"FAILED"}
        failed = await deliveries(gql, endpoint_id, status=["FAILED"])
        assert len(failed) == len(stored)
        assert await deliveries(gql, endpoint_id, status=["PENDING", "SUCCEEDED"]) == []
        attempts_seen = len(receiver.received)
        await asyncio.sleep(1.5)
        assert len(receiver.received) == attempts_seen  # nothing is sent to a disabled endpoint

        receiver.answer = 200
        enabled = (await gql(UPDATE, input={"id": endpoint_id, "enabled": True}))["updateWebhookEndpoint"]
        assert enabled["endpoint"]["enabled"] is True
        assert enabled["endpoint"]["disabledReason"] is None
        redelivered = (await gql(REDELIVER, input={"endpointId": endpoint_id}))["redeliverWebhooks"]
        assert redelivered == {"redelivered": len(stored), "userErrors": []}
        sent = await journal(sqlite_url)
        await receiver.wait_for(ids_of(sent))
        receiver.check_order()
        # The round stores its outcomes once its requests were answered: a moment after the receiver.
        assert {d["status"] for d in await settled_deliveries(gql, endpoint_id)} == {"SUCCEEDED"}


@pytest.mark.slow
async def test_a_short_outage_does_not_disable_an_endpoint(sqlite_url: str) -> None:
    receiver = Receiver()
    receiver.answer = 503
    async with receiver.running(), served(sqlite_url, webhook_disable_after=timedelta(seconds=4)) as gql:
        await subscribe(gql, receiver)
        await settled_orders(gql, 3)  # a burst of failed attempts, one per saga
        await eventually(lambda: len(receiver.received) >= 3, "a failed attempt per saga")
        receiver.answer = 200
        sent = await journal(sqlite_url)
        await receiver.wait_for(ids_of(sent))
        await asyncio.sleep(4.5)  # past the window: the endpoint recovered within it
        [endpoint] = (await gql(ENDPOINTS))["webhookEndpoints"]
        assert endpoint["enabled"] is True
        assert endpoint["failingSince"] is None


async def test_a_deliveries_cursor_this_api_did_not_make_is_refused_naming_its_argument(
    sqlite_url: str,
) -> None:
    receiver = Receiver()
    async with served(sqlite_url) as gql:
        endpoint_id = await subscribe(gql, receiver)
        for argument in ("after", "before"):
            for cursor in ("not-a-cursor", "", "-1"):
                response = await gql.http.post(
                    "/graphql", json={"query": DELIVERIES, "variables": {"id": endpoint_id, argument: cursor}}
                )
                [error] = response.json()["errors"]
                assert error["message"] == "invalid cursor: pass a cursor this API returned", cursor
                assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}


@pytest.mark.slow
async def test_one_failed_delivery_is_redelivered_alone_and_unknown_ones_are_refused(sqlite_url: str) -> None:
    receiver = Receiver()
    receiver.answer = 500
    settings = {"webhook_retry_for": timedelta(seconds=1), "webhook_disable_after": timedelta(hours=1)}
    async with receiver.running(), served(sqlite_url, **settings) as gql:
        endpoint_id = await subscribe(gql, receiver)
        first, second = await settled_orders(gql, 2)
        # Retried for a second only: each saga's first event fails, the endpoint stays enabled.
        for saga_id in (first, second):
            failed = f"evt_{saga_id}_1"

            async def has_failed(event_id: str = failed) -> bool:
                rows = await deliveries(gql, endpoint_id, status=["FAILED"])
                return any(row["eventId"] == event_id for row in rows)

            for _ in range(200):
                if await has_failed():
                    break
                await asyncio.sleep(0.05)
            assert await has_failed()
        receiver.answer = 200
        one = await gql(REDELIVER, input={"endpointId": endpoint_id, "eventId": f"evt_{first}_1"})
        assert one["redeliverWebhooks"] == {"redelivered": 1, "userErrors": []}
        sent = [p for p in await journal(sqlite_url) if p["data"]["sagaId"] == first]
        await receiver.wait_for(ids_of(sent))
        assert not any(r.saga_id == second and r.status == 200 for r in receiver.received)
        receiver.check_order()

        again = await gql(REDELIVER, input={"endpointId": endpoint_id, "eventId": f"evt_{first}_1"})
        assert again["redeliverWebhooks"] == {
            "redelivered": None,
            "userErrors": [{"code": "NOT_FAILED", "field": "eventId"}],
        }
        unknown = await gql(REDELIVER, input={"endpointId": "no-such-endpoint"})
        assert unknown["redeliverWebhooks"]["userErrors"] == [
            {"code": "UNKNOWN_WEBHOOK_ENDPOINT", "field": "endpointId"}
        ]


async def test_deliveries_are_paged_latest_first_and_filtered_by_status(sqlite_url: str) -> None:
    receiver = Receiver()
    receiver.answer = 500
    async with receiver.running(), served(sqlite_url) as gql:
        endpoint_id = await subscribe(gql, receiver)
        await settled_orders(gql, 2)
        everything = await stored_for(gql, endpoint_id, len(await journal(sqlite_url)), first=100)
        positions = [decode_cursor(d["cursor"]) for d in everything]
        assert positions == sorted(positions, reverse=True)
        pages: list[dict[str, Any]] = []
        after = None
        while True:
            page = (await gql(DELIVERIES, id=endpoint_id, first=3, after=after))["webhookDeliveries"]
            pages.extend(edge["node"] for edge in page["edges"])
            assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert [d["eventId"] for d in pages] == [d["eventId"] for d in everything]
        # Backward, from the end: the same list, page by page, each page in list order.
        backward: list[dict[str, Any]] = []
        before = None
        while True:
            page = (await gql(DELIVERIES, id=endpoint_id, last=3, before=before))["webhookDeliveries"]
            backward = [edge["node"] for edge in page["edges"]] + backward
            assert page["pageInfo"]["hasNextPage"] is (before is not None)
            if not page["pageInfo"]["hasPreviousPage"]:
                break
            before = page["pageInfo"]["startCursor"]
        assert [d["eventId"] for d in backward] == [d["eventId"] for d in everything]
        assert await deliveries(gql, endpoint_id, status=["SUCCEEDED"]) == []

        body = await gql.http.post(
            "/graphql", json={"query": DELIVERIES, "variables": {"id": endpoint_id, "after": "bogus"}}
        )
        assert body.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        body = await gql.http.post("/graphql", json={"query": DELIVERIES, "variables": {"id": "none"}})
        assert body.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_deleted_endpoint_is_sent_nothing_more(database_url: str) -> None:
    receiver = Receiver()
    async with receiver.running(), served(database_url) as gql:
        endpoint_id = await subscribe(gql, receiver)
        deleted = await gql(DELETE, id=endpoint_id)
        assert deleted["deleteWebhookEndpoint"] == {"deletedId": endpoint_id, "userErrors": []}
        await settled_orders(gql, 1)
        await asyncio.sleep(1.5)
        assert receiver.received == []
        assert (await gql(ENDPOINTS))["webhookEndpoints"] == []
        again = await gql(DELETE, id=endpoint_id)
        assert again["deleteWebhookEndpoint"] == {
            "deletedId": None,
            "userErrors": [{"code": "UNKNOWN_WEBHOOK_ENDPOINT"}],
        }


async def test_the_readme_receiver_verifies_every_delivery(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    match = re.search(r"```python\n(.+?)\n```", readme, re.DOTALL)
    assert match is not None
    receiver = Receiver()  # for its free port only: the README's app serves on it
    url = f"http://127.0.0.1:{receiver.port}/ordersaga"
    async with served(sqlite_url) as gql:
        created = (await gql(CREATE, input={"url": url}))["createWebhookEndpoint"]
        namespace: dict[str, Any] = {}
        exec(match.group(1).replace('"whsec_…"', repr(created["secret"])), namespace)  # noqa: S102
        async with serve_app(namespace["app"], port=receiver.port):
            [saga_id] = await settled_orders(gql, 1)
            sent = await journal(sqlite_url)
            printed: list[str] = []

            def all_printed() -> bool:
                printed.extend(capsys.readouterr().out.splitlines())
                return len(printed) >= len(sent)

            await eventually(all_printed, "the receiver to print every event")
    assert printed == [f"{p['type']} {saga_id} {p['data']['status']}" for p in sent]


async def test_endpoints_created_and_deleted_at_once_never_hold_up_the_sagas(sqlite_url: str) -> None:
    """Deleting an endpoint stops its relay wherever it is, within a write too: the write still ends,
    so SQLite's write lock is never left behind for the sagas' commits to wait on (they would answer
    SERVICE_UNAVAILABLE after the busy timeout)."""
    async with served(sqlite_url) as gql:
        for attempt in range(40):
            made = (await gql(CREATE, input={"url": "http://127.0.0.1:9/hook"}))["createWebhookEndpoint"]
            await asyncio.sleep(attempt % 5 * 0.003)  # the relay caught at different points of its start
            await gql(DELETE, id=made["endpoint"]["id"])
            placed = await place(gql, 1, customerId=f"c{attempt}")
            assert placed["userErrors"] == []


async def test_an_answer_that_is_not_http_is_a_failed_attempt_and_the_relay_goes_on(sqlite_url: str) -> None:
    answers = 0

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX\x01: y\r\nContent-Length: 0\r\n\r\n")  # no valid header
        answers += 1
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with served(sqlite_url) as gql:
            created = await gql(CREATE, input={"url": f"http://127.0.0.1:{port}/hook"})
            endpoint_id = created["createWebhookEndpoint"]["endpoint"]["id"]
            (saga_id,) = await settled_orders(gql, 1)
            stored = await stored_for(gql, endpoint_id, 7)
            first = next(d for d in stored if d["eventId"] == f"evt_{saga_id}_1")
            assert first["status"] == "PENDING" and first["error"] and first["attempts"] >= 1
            # Its first retry comes within seconds, from the same relay, which did not die.
            await eventually(lambda: answers >= 2, "a retry", seconds=10)
            assert (await gql(ENDPOINTS))["webhookEndpoints"][0]["enabled"] is True
    finally:
        server.close()
        await server.wait_closed()


async def test_on_sqlite_the_relays_and_operators_writes_go_through_the_one_writer(sqlite_url: str) -> None:
    """SQLite takes one writer at a time. The relays' and operators' writes (endpoints, relay
    positions, staged faults; seen here as the statements SQLAlchemy runs, which the sagas' prepared
    ones are not) are made by the commit lanes' writer thread, as the sagas' are:
    a second connection would wait for the lock behind the sagas, and, holding it across turns of a
    busy event loop, make the sagas' writer wait for it in turn."""
    written: list[tuple[str, str]] = []  # (thread, statement) of every write SQLAlchemy runs

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            written.append((threading.current_thread().name, statement))

    receiver = Receiver()
    async with receiver.running(), served(sqlite_url, fault_injection=True) as gql:
        event.listen(Engine, "before_cursor_execute", record)
        try:
            endpoint_id = await subscribe(gql, receiver)
            await settled_orders(gql, 3)
            await receiver.wait_for(ids_of(await journal(sqlite_url)))
            staged = await gql(STAGE_FAULT, input={"participant": "SHIPMENT", "failNext": 1})
            assert staged["setParticipantFault"]["userErrors"] == []
            cleared = await gql("mutation { clearParticipantFaults { userErrors { code } } }")
            assert cleared["clearParticipantFaults"]["userErrors"] == []
            disable = {"id": endpoint_id, "enabled": False}
            assert (await gql(UPDATE, input=disable))["updateWebhookEndpoint"]["userErrors"] == []
            assert (await gql(DELETE, id=endpoint_id))["deleteWebhookEndpoint"]["userErrors"] == []
        finally:
            event.remove(Engine, "before_cursor_execute", record)
    tables = {re.search(r"(?:INTO|UPDATE|FROM) (\w+)", statement).group(1) for _, statement in written}  # type: ignore[union-attr]
    assert {"webhook_endpoints", "relays", "staged_faults"} <= tables, tables
    assert {thread for thread, _ in written} <= {"ordersaga-writer_0"}, written


@pytest.mark.slow
async def test_a_retry_the_receiver_holds_holds_up_only_its_own_saga(database_url: str) -> None:
    receiver = Receiver()
    receiver.answer = 503
    # A request may take long: the held retry stays on the wire for the whole test.
    async with receiver.running(), served(database_url, webhook_timeout=60.0) as gql:
        endpoint_id = await subscribe(gql, receiver)
        [stuck] = await settled_orders(gql, 1)
        await stored_for(gql, endpoint_id, 1, status=["PENDING"])  # its first event failed, stored
        receiver.answer, receiver.held_saga, receiver.held = 200, stuck, asyncio.Event()
        retries = len(receiver.arrivals)
        await eventually(lambda: len(receiver.arrivals) > retries, "the stuck saga's retry", seconds=10)
        # While the receiver holds that retry, another saga's events all go through.
        [other] = await settled_orders(gql, 1)
        others = {e for e in ids_of(await journal(database_url)) if other in e}
        await receiver.wait_for(others, seconds=20)
        assert not any(r.saga_id == stuck and r.status == 200 for r in receiver.received)
        receiver.held.set()
        await receiver.wait_for(ids_of(await journal(database_url)), seconds=30)
        receiver.check_order()
