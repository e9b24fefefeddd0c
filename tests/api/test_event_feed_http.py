"""The journal as clients follow it, over real HTTP and WebSocket on each database: cursors on every
transition, `sagaFeed(after:)` resuming where a client left off, `journalEvents` listing the same
events in the same order, and cursors refused unless the caller may see their event."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx

from api.settings import Settings
from persistence.read.event_log import encode_cursor
from tests.api.live import Live
from tests.api.server import TLS
from tests.api.subscriptions import SubscriptionClient, subscriptions
from tests.api.tokens import AUTH, CUSTOMER_A, CUSTOMER_B, OPERATOR, Caller, codes, served

FEED = """
subscription ($after: String) {
  sagaFeed(after: $after) { cursor sequence type status saga { id } }
}
"""
JOURNAL = """
query ($first: Int, $after: String) {
  journalEvents(first: $first, after: $after) {
    edges { cursor node { cursor sequence type saga { id } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
SAGA_STATUS = "query ($id: ID!) { saga(id: $id) { status } }"
SAGA_EVENTS = "query ($id: ID!) { saga(id: $id) { events { sequence cursor } } }"
TRANSITIONS_PER_SAGA = 7


def key(update: dict[str, Any]) -> tuple[str, int]:
    return update["saga"]["id"], update["sequence"]


async def take(client: SubscriptionClient, count: int) -> list[dict[str, Any]]:
    return [(await client.next("feed"))["data"]["sagaFeed"] for _ in range(count)]  # type: ignore[index]


async def the_whole_journal(ask: Any, first: int = 4) -> list[dict[str, Any]]:
    """Every journal event, paged through `journalEvents` `first` at a time."""
    events: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await ask(JOURNAL, first=first, after=after))["journalEvents"]
        assert page["pageInfo"]["hasPreviousPage"] is (after is not None)
        events += [edge["node"] for edge in page["edges"]]
        assert [edge["cursor"] for edge in page["edges"]] == [
            edge["node"]["cursor"] for edge in page["edges"]
        ]
        if not page["pageInfo"]["hasNextPage"]:
            return events
        after = page["pageInfo"]["endCursor"]


async def completed(live: Live, count: int) -> list[str]:
    saga_ids = [await live.place(1) for _ in range(count)]
    for saga_id in saga_ids:
        await live.gql.wait_for_saga(saga_id, "COMPLETED")
    return saga_ids


async def test_a_feed_resumed_from_the_last_cursor_gets_every_transition_once(live: Live) -> None:
    async with subscriptions(live.url) as client:
        await client.subscribe("feed", FEED)
        await live.until_subscribed(1)
        first = await completed(live, 2)
        before = await take(client, TRANSITIONS_PER_SAGA + 3)  # the client goes away mid-saga
    await live.until_subscribed(0)
    second = await completed(live, 2)  # committed while nobody listened

    async with subscriptions(live.url) as client:
        await client.subscribe("feed", FEED, after=before[-1]["cursor"])
        missed = 4 * TRANSITIONS_PER_SAGA - len(before)
        after = await take(client, missed)
        # Then live, from there on.
        (third,) = await completed(live, 1)
        live_ones = await take(client, TRANSITIONS_PER_SAGA)

    journal = await the_whole_journal(live.gql)
    received = before + after + live_ones
    assert [key(u) for u in received] == [key(e) for e in journal]
    assert [u["cursor"] for u in received] == [e["cursor"] for e in journal]
    assert sorted({key(u)[0] for u in received}) == sorted([*first, *second, third])
    assert len(set(map(key, received))) == len(received) == 5 * TRANSITIONS_PER_SAGA


async def test_every_transition_carries_the_cursor_journal_events_lists_it_under(live: Live) -> None:
    (saga_id,) = await completed(live, 1)
    events = (await live.gql(SAGA_EVENTS, id=saga_id))["saga"]["events"]
    journal = await the_whole_journal(live.gql, first=3)
    assert [(e["sequence"], e["cursor"]) for e in events] == [(e["sequence"], e["cursor"]) for e in journal]
    # After the last cursor there is nothing yet; the page says so.
    empty = (await live.gql(JOURNAL, first=5, after=journal[-1]["cursor"]))["journalEvents"]
    assert empty["edges"] == [] and empty["pageInfo"]["hasNextPage"] is False
    assert empty["pageInfo"]["startCursor"] is None


async def test_cursors_that_name_no_event_are_refused_as_bad_input(live: Live) -> None:
    await completed(live, 1)
    orders_cursor = (await live.gql("{ orders(first: 1) { pageInfo { endCursor } } }"))["orders"]["pageInfo"][
        "endCursor"
    ]
    refused = [
        "not a cursor",
        "",
        orders_cursor,  # another listing's
        encode_cursor(0),  # before the first event: omit `after` instead
        encode_cursor(10**9),  # not given out yet
        base64.urlsafe_b64encode(b"journal:01").decode(),  # not as this API writes it
        base64.urlsafe_b64encode(b"journal:\xff").decode(),
    ]
    async with httpx.AsyncClient(base_url=live.url, timeout=10, verify=TLS) as http:
        ask = Caller(http, {})
        for cursor in refused:
            body = await ask(JOURNAL, first=1, after=cursor)
            assert codes(body) == ["BAD_USER_INPUT"], (cursor, body)
            assert body["errors"][0]["extensions"]["argument"] == "after"
    async with subscriptions(live.url) as client:
        for n, cursor in enumerate(refused):
            await client.subscribe(f"feed-{n}", FEED, after=cursor)
            errors = await client.refusal(f"feed-{n}")
            assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], (cursor, errors)
            assert await client.next(f"feed-{n}") is None  # and the subscription is over


async def test_customers_follow_and_list_only_their_own_sagas_and_cursors(sqlite_url: str) -> None:
    async with served(Settings(database_url=sqlite_url, auth=AUTH)) as server:
        operator, a, b = (Caller(server.http, headers) for headers in (OPERATOR, CUSTOMER_A, CUSTOMER_B))
        await stock_and_place(operator, a, b)
        theirs = await the_whole_journal(a.data)
        everyone = await the_whole_journal(operator.data)
        mine = await the_whole_journal(b.data)
        assert len(everyone) == 2 * TRANSITIONS_PER_SAGA
        assert len(theirs) == len(mine) == TRANSITIONS_PER_SAGA
        assert [e["cursor"] for e in everyone] == sorted(
            [e["cursor"] for e in theirs + mine], key=[e["cursor"] for e in everyone].index
        )
        # A's cursor means nothing to B, as A's saga does not.
        body = await b(JOURNAL, first=1, after=theirs[0]["cursor"])
        assert codes(body) == ["BAD_USER_INPUT"]
        init = {"Authorization": CUSTOMER_B["Authorization"]}
        async with subscriptions(server.url, init) as client:
            await client.subscribe("foreign", FEED, after=theirs[0]["cursor"])
            assert [e["extensions"]["code"] for e in await client.refusal("foreign")] == ["BAD_USER_INPUT"]
            assert await client.next("foreign") is None
            await client.subscribe("feed", FEED, after=mine[0]["cursor"])
            resumed = await take(client, TRANSITIONS_PER_SAGA - 1)
        assert [e["cursor"] for e in resumed] == [e["cursor"] for e in mine[1:]]


async def stock_and_place(operator: Caller, *customers: Caller) -> None:
    """TEA in stock, and one order for each customer, run to completion."""
    await operator.data(
        """mutation {
          a: registerWarehouse(
            input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]}
          ) { userErrors { code } }
          b: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) {
            userErrors { code } }
          c: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 10}) {
            userErrors { code } }
        }"""
    )
    for customer in customers:
        placed = await customer.data(
            """mutation { placeOrder(input: {lines: [{sku: "TEA", quantity: 1}]}) {
                 saga { id } userErrors { code } } }"""
        )
        saga_id = placed["placeOrder"]["saga"]["id"]
        for _ in range(200):
            if (await operator.data(SAGA_STATUS, id=saga_id))["saga"]["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"saga {saga_id} did not complete")
