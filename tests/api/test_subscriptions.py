"""Subscriptions over a real WebSocket (graphql-transport-ws), against a served instance on each database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from graphql.execution.collect_fields import CollectedFields

from api.live.pacing import VALUES_PER_PASS, Pacer
from api.settings import Settings
from domain.model.commands import PlaceOrder
from domain.model.saga import Participant
from domain.model.values import OrderLine
from tests.api.live import Live, reads_sent, saga_renderings, serve_live
from tests.api.subscriptions import PROTOCOL, subscriptions, websocket_url

UPDATES = """
subscription ($id: ID!) {
  sagaUpdates(sagaId: $id) {
    sequence type status step reason
    saga { id status events { sequence type status } }
  }
}
"""
FEED = """
subscription ($status: [SagaStatus!]) {
  sagaFeed(status: $status) { sequence type status step saga { id } }
}
"""
COMPLETED_PATH = [
    ("SagaStarted", "ORDER_CREATED"),
    ("StepStarted", "STOCK_RESERVING"),
    ("StepSucceeded", "STOCK_RESERVED"),
    ("StepStarted", "ORDER_CONFIRMING"),
    ("StepSucceeded", "ORDER_CONFIRMED"),
    ("StepStarted", "SHIPMENT_CREATING"),
    ("StepSucceeded", "COMPLETED"),
]
SHORTAGE_PATH = [
    ("SagaStarted", "ORDER_CREATED"),
    ("StepStarted", "STOCK_RESERVING"),
    ("StepFailed", "STOCK_RESERVATION_FAILED"),
    ("CompensationStarted", "COMPENSATING"),
    ("StepStarted", "COMPENSATING"),
    ("StepSucceeded", "FAILED"),
]
SHORTAGE = "insufficient stock: TEA short by 4 (requested 9, available 5)"


def path(updates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(u["type"], u["status"]) for u in updates]


async def test_saga_updates_send_the_current_state_then_every_transition_until_completed(live: Live) -> None:
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(2)
    async with subscriptions(live.url) as client:
        await client.subscribe("1", UPDATES, id=saga_id)
        current = (await client.next("1"))["data"]["sagaUpdates"]  # type: ignore[index]
        live.gate.release(Participant.INVENTORY)
        later = [p["data"]["sagaUpdates"] for p in await client.until_complete("1")]

    assert [current["sequence"], current["status"], current["step"]] == [
        2,
        "STOCK_RESERVING",
        "RESERVE_STOCK",
    ]
    assert current["saga"]["id"] == saga_id
    before = current["saga"]["events"]
    assert [e["sequence"] for e in before] == [1, 2] and before[-1]["status"] == current["status"]
    assert [u["sequence"] for u in later] == [3, 4, 5, 6, 7]
    assert path(before[:1] + [current] + later) == COMPLETED_PATH
    assert later[-1]["saga"]["status"] == "COMPLETED"


async def test_saga_updates_of_a_shortage_end_failed_with_the_reason(live: Live) -> None:
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(9)
    async with subscriptions(live.url) as client:
        await client.subscribe("1", UPDATES, id=saga_id)
        current = (await client.next("1"))["data"]["sagaUpdates"]  # type: ignore[index]
        live.gate.release(Participant.INVENTORY)
        later = [p["data"]["sagaUpdates"] for p in await client.until_complete("1")]

    assert [u["sequence"] for u in [current, *later]] == [2, 3, 4, 5, 6]
    assert path(current["saga"]["events"][:1] + [current] + later) == SHORTAGE_PATH
    failed, compensating = later[0], later[1]
    assert (failed["step"], failed["reason"]) == ("RESERVE_STOCK", SHORTAGE)
    assert compensating["reason"] == SHORTAGE
    assert [u["step"] for u in later[2:]] == ["CANCEL_ORDER", "CANCEL_ORDER"]


async def test_subscribing_to_a_finished_saga_gets_its_state_then_completes(live: Live) -> None:
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    async with subscriptions(live.url) as client:
        await client.subscribe("1", UPDATES, id=saga_id)
        updates = await client.until_complete("1")

    assert [(u["data"]["sagaUpdates"]["sequence"], u["data"]["sagaUpdates"]["status"]) for u in updates] == [
        (7, "COMPLETED")
    ]
    assert live.svc.subscribers == 0


async def test_an_unknown_saga_is_an_error_that_ends_the_subscription(live: Live) -> None:
    unknown = str(uuid.uuid4())
    async with subscriptions(live.url) as client:
        await client.subscribe("1", UPDATES, id=unknown)
        (failure,) = await client.until_complete("1")

    assert failure["data"] is None
    assert [e["message"] for e in failure["errors"]] == [f"no saga with id {unknown}"]


async def test_the_feed_interleaves_sagas_and_filters_on_the_status_after_each_transition(live: Live) -> None:
    live.gate.hold(Participant.INVENTORY)
    async with subscriptions(live.url) as client:
        await client.subscribe("all", FEED)
        await client.subscribe("ends", FEED, status=["COMPLETED", "FAILED", "STOCK_RESERVED"])
        await live.until_subscribed(2)
        completing, failing = await live.place(1), await live.place(9)
        live.gate.release(Participant.INVENTORY)

        every: dict[str, list[dict[str, Any]]] = {completing: [], failing: []}
        while len(every[completing]) < len(COMPLETED_PATH) or len(every[failing]) < len(SHORTAGE_PATH):
            update = (await client.next("all"))["data"]["sagaFeed"]  # type: ignore[index]
            every[update["saga"]["id"]].append(update)
        filtered = [(await client.next("ends"))["data"]["sagaFeed"] for _ in range(3)]  # type: ignore[index]
        # Nothing more is pending: the next update on either stream is the next saga's first.
        third = await live.place(1)
        assert (await client.next("all"))["data"]["sagaFeed"]["saga"]["id"] == third  # type: ignore[index]

    assert [u["sequence"] for u in every[completing]] == list(range(1, len(COMPLETED_PATH) + 1))
    assert [u["sequence"] for u in every[failing]] == list(range(1, len(SHORTAGE_PATH) + 1))
    assert path(every[completing]) == COMPLETED_PATH and path(every[failing]) == SHORTAGE_PATH
    assert sorted((u["saga"]["id"], u["sequence"], u["status"]) for u in filtered) == sorted(
        [(completing, 3, "STOCK_RESERVED"), (completing, 7, "COMPLETED"), (failing, 6, "FAILED")]
    )


async def test_a_client_that_disconnects_mid_stream_leaves_no_subscriber_and_no_error(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(1)
    async with subscriptions(live.url) as client:
        await client.subscribe("one", UPDATES, id=saga_id)
        await client.subscribe("all", FEED)
        assert (await client.next("one"))["data"]["sagaUpdates"]["sequence"] == 2  # type: ignore[index]
        await live.until_subscribed(2)
        # Gone without a close handshake, as when a browser tab dies or the network drops.
        client.socket.transport.abort()
    await live.until_subscribed(0)

    live.gate.release(Participant.INVENTORY)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_only_graphql_transport_ws_is_spoken(live_on_sqlite: Live) -> None:
    legacy = websockets.Subprotocol("graphql-ws")
    async with websockets.connect(websocket_url(live_on_sqlite.url), subprotocols=[legacy]) as socket:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


async def test_a_connection_that_never_initialises_is_closed(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}",
        connection_init_timeout=timedelta(milliseconds=200),
    )
    async with (
        serve_live(settings) as live,
        websockets.connect(websocket_url(live.url), subprotocols=[PROTOCOL]) as socket,
    ):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_a_subscription_over_http_is_told_where_subscriptions_are_served(
    live_on_sqlite: Live,
) -> None:
    answer = await live_on_sqlite.gql.http.post("/graphql", json={"query": FEED})
    assert [e["message"] for e in answer.json()["errors"]] == [
        "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql"
    ]


async def test_the_feed_follows_a_completed_saga_to_its_dispatch_and_a_cancel_after_completion(
    live: Live,
) -> None:
    dispatched, cancelled = await live.place(1), await live.place(1)
    for saga_id in (dispatched, cancelled):
        await live.gql.wait_for_saga(saga_id, "COMPLETED")
    async with subscriptions(live.url) as client:
        await client.subscribe("all", FEED)
        await live.until_subscribed(1)
        shipment = (await live.gql.wait_for_saga(dispatched, "COMPLETED"))["order"]["shipment"]["id"]
        dispatch = (
            "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) { userErrors { code } } }"
        )
        assert (await live.gql(dispatch, id=shipment))["dispatchShipment"]["userErrors"] == []
        update = (await client.next("all"))["data"]["sagaFeed"]  # type: ignore[index]
        assert (update["saga"]["id"], update["type"], update["status"]) == (
            dispatched,
            "ShipmentDispatched",
            "COMPLETED",
        )

        order = (await live.gql.wait_for_saga(cancelled, "COMPLETED"))["order"]["id"]
        cancel = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { userErrors { code } } }"
        assert (await live.gql(cancel, id=order))["cancelOrder"]["userErrors"] == []
        after: list[tuple[str, str, str | None]] = []
        while not after or after[-1][1] != "FAILED":
            update = (await client.next("all"))["data"]["sagaFeed"]  # type: ignore[index]
            after.append((update["type"], update["status"], update["step"]))

    assert after == [
        ("CustomerCancelled", "COMPENSATING", None),
        ("StepStarted", "COMPENSATING", "CANCEL_SHIPMENT"),
        ("StepSucceeded", "COMPENSATING", "CANCEL_SHIPMENT"),
        ("StepStarted", "COMPENSATING", "RELEASE_STOCK"),
        ("StepSucceeded", "COMPENSATING", "RELEASE_STOCK"),
        ("StepStarted", "COMPENSATING", "CANCEL_ORDER"),
        ("StepSucceeded", "FAILED", "CANCEL_ORDER"),
    ]


async def test_subscribers_with_one_selection_share_one_read_and_one_rendering_of_each_transition(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    selections = [FEED, "subscription { sagaFeed { sequence status saga { status } } }"]
    rendered = saga_renderings(monkeypatch)
    reads: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The sagas of the transitions read: one read of them per read that found any.
        if (
            statement.lstrip().upper().startswith("SELECT")
            and "saga_timeline" not in statement
            and "saga_view" in statement
        ):
            reads.append(statement)

    async with contextlib.AsyncExitStack() as connections:
        clients = [await connections.enter_async_context(subscriptions(live.url)) for _ in range(8)]
        for n, client in enumerate(clients):
            await client.subscribe("feed", selections[n % 2])
        await live.until_subscribed(len(clients))
        with reads_sent(live.svc, record):
            # Placed past GraphQL, whose answer would render a saga of its own.
            placed = await live.svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("TEA", 1),)))
            received = [
                [(await client.next("feed"))["data"]["sagaFeed"] for _ in COMPLETED_PATH]  # type: ignore[index]
                for client in clients
            ]

    assert all([u["sequence"] for u in updates] == list(range(1, 8)) for updates in received)
    assert all(u["saga"] for updates in received for u in updates)
    # At most one read of the saga per commit, whatever the number of subscribers; each transition
    # rendered once per selection.
    assert 0 < len(reads) <= len(COMPLETED_PATH)
    assert rendered == [placed.saga_id] * len(COMPLETED_PATH) * len(selections)


def collected_field_sets() -> int:
    """How many field sets graphql-core's executors hold, collected or memoized, alive now."""
    gc.collect()
    return sum(isinstance(o, CollectedFields) for o in gc.get_objects())


async def test_a_long_subscription_keeps_nothing_per_event_it_sent(live: Live) -> None:
    async with subscriptions(live.url) as client:
        await client.subscribe("feed", FEED)
        await live.until_subscribed(1)

        async def one_saga() -> None:
            # Placed past GraphQL, so that only the subscription's events are executed.
            await live.svc.orchestrator.place_order(PlaceOrder("c-1", (OrderLine("TEA", 1),)))
            for _ in COMPLETED_PATH:
                await client.next("feed")

        await one_saga()
        after_one = collected_field_sets()
        for _ in range(4):
            await one_saga()
        # Each event's execution collects its selection's fields anew; none of them outlives it.
        assert collected_field_sets() == after_one


class CountingPacer(Pacer):
    """The service's pacer, noting what each message asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.costs: list[int] = []

    async def turn(self, cost: int = 1) -> None:
        self.costs.append(cost)
        await super().turn(cost)


async def test_a_feed_selecting_many_values_a_message_asks_the_pacer_for_as_many_passes(live: Live) -> None:
    live.svc.pacer = pacer = CountingPacer()
    lean = "subscription { sagaFeed { sequence status } }"
    # Two lists of an order's lines (at most 100 each), two fields a line: 604 values, 61 passes.
    rich = (
        "subscription { sagaFeed { saga { order { a: lines { sku quantity } b: lines { sku quantity } } } } }"
    )
    async with subscriptions(live.url) as client:
        await client.subscribe("lean", lean)
        await client.subscribe("rich", rich)
        await live.until_subscribed(2)
        await live.place(1)
        await client.next("lean")
        await client.next("rich")
    assert set(pacer.costs) == {1, -(-(1 + 1 + 1 + 2 * (100 + 2 * 100)) // VALUES_PER_PASS)} == {1, 61}
