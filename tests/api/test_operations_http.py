"""Staging faults, and repairing what they break, over real HTTP against a served instance with fault
injection on, on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.service import Service
from api.settings import Settings
from domain.model.saga import CUSTOMER_CANCELLED, SagaPolicy
from tests.api.server import FAULT, TLS, GraphQLClient, place, serve, stage, stock

# Timeouts far beyond any test's pace: here faults and operators decide what happens, not the clock.
POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=30),
    confirm_timeout=timedelta(seconds=30),
    shipment_timeout=timedelta(seconds=30),
    compensation_timeout=timedelta(seconds=30),
    retry_backoff=timedelta(milliseconds=50),
)
CLEAR = """
mutation { clearParticipantFaults { faults { participant } userErrors { code field message } } }
"""
FAULTS = "{ participantFaults { participant delayMs failNext failureRate } }"
ANSWER = "saga { id status failureReason } order { id status } userErrors { code field message }"
RETRY = f"mutation ($id: ID!) {{ retrySaga(input: {{sagaId: $id}}) {{ {ANSWER} }} }}"
ABORT = (
    "mutation ($id: ID!, $reason: String!) "
    f"{{ abortSaga(input: {{sagaId: $id, reason: $reason}}) {{ {ANSWER} }} }}"
)
CANCEL = f"mutation ($id: ID!) {{ cancelOrder(input: {{orderId: $id}}) {{ {ANSWER} }} }}"
ATTENTION = "query ($limit: Int!) { sagasNeedingAttention(limit: $limit) { id status failureReason } }"
STOCK = '{ stockLevels(sku: "TEA") { onHand reserved } }'
SHIPMENTS = "query ($id: ID!) { order(id: $id) { status shipments { id status } } }"
DISPATCH = """mutation ($id: ID!) {
  dispatchShipment(input: {shipmentId: $id}) { order { status } userErrors { code } } }"""


async def serve_client(database_url: str, fault_injection: bool) -> AsyncIterator[GraphQLClient]:
    settings = Settings(database_url=database_url, policy=POLICY, fault_injection=fault_injection)
    async with (
        serve(Service(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        client = GraphQLClient(http)
        await stock(client)
        yield client


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    async for client in serve_client(database_url, fault_injection=True):
        yield client


def codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


async def test_a_parked_compensation_is_listed_then_retried_to_failed(gql: GraphQLClient) -> None:
    await stage(gql, "ORDERS", failureRate=1.0)
    placed = await place(gql, 9)  # more than the 5 in stock: the order must be cancelled, and cannot be
    saga_id = placed["saga"]["id"]
    await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    later = (await place(gql, 8))["saga"]["id"]
    await gql.wait_for_saga(later, "NEEDS_ATTENTION")

    parked = (await gql(ATTENTION, limit=10))["sagasNeedingAttention"]
    assert [p["id"] for p in parked] == [saga_id, later]  # the longest waiting first
    assert parked[0]["failureReason"] == (
        "CANCEL_ORDER failed after 3 attempts: ORDERS failed (staged failure rate)"
    )
    assert [p["id"] for p in (await gql(ATTENTION, limit=1))["sagasNeedingAttention"]] == [saga_id]
    assert (await gql(CLEAR))["clearParticipantFaults"] == {"faults": [], "userErrors": []}

    retried = (await gql(RETRY, id=saga_id))["retrySaga"]
    assert retried["userErrors"] == [] and retried["saga"]["status"] in ("COMPENSATING", "FAILED")
    saga = await gql.wait_for_saga(saga_id, "FAILED")
    assert saga["failureReason"] == "insufficient stock: TEA short by 4 (requested 9, available 5)"
    assert saga["order"]["status"] == "CANCELLED"
    assert "SagaRetried" in [e["type"] for e in saga["events"]]
    assert [p["id"] for p in (await gql(ATTENTION, limit=10))["sagasNeedingAttention"]] == [later]

    assert codes((await gql(RETRY, id=saga_id))["retrySaga"]) == [("SAGA_NOT_PARKED", "sagaId")]
    assert codes((await gql(RETRY, id="no-such-saga"))["retrySaga"]) == [("UNKNOWN_SAGA", "sagaId")]


async def test_abort_during_a_slow_confirmation_compensates_with_the_reason(gql: GraphQLClient) -> None:
    await stage(gql, "ORDERS", delayMs=60_000)
    placed = await place(gql, 2)
    saga_id = placed["saga"]["id"]
    await gql.wait_for_saga(saga_id, "ORDER_CONFIRMING")
    await gql(CLEAR)

    refused = (await gql(ABORT, id=saga_id, reason=" "))["abortSaga"]
    assert (refused["saga"], codes(refused)) == (None, [("REQUIRED", "reason")])
    aborted = (await gql(ABORT, id=saga_id, reason="suspected fraud"))["abortSaga"]
    assert aborted["userErrors"] == [] and aborted["saga"]["status"] in ("COMPENSATING", "FAILED")

    saga = await gql.wait_for_saga(saga_id, "FAILED")
    assert saga["failureReason"] == "suspected fraud"
    assert [(s["name"], s["status"]) for s in saga["steps"]][2:] == [
        ("CONFIRM_ORDER", "ABANDONED"),
        ("RELEASE_STOCK", "SUCCEEDED"),
        ("CANCEL_ORDER", "SUCCEEDED"),
    ]
    assert "SagaAborted" in [e["type"] for e in saga["events"]]
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 0}]
    again = (await gql(ABORT, id=saga_id, reason="twice"))["abortSaga"]
    assert codes(again) == [("SAGA_FINISHED", "sagaId")]


async def test_a_shipment_that_keeps_failing_parks_and_an_abort_compensates_it(gql: GraphQLClient) -> None:
    await stage(gql, "SHIPMENT", failNext=3)
    placed = await place(gql, 2)
    saga_id = placed["saga"]["id"]
    parked = await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    assert (
        parked["failureReason"] == "CREATE_SHIPMENT failed after 3 attempts: SHIPMENT failed (staged fault)"
    )
    assert parked["order"]["status"] == "CONFIRMED"
    assert (await gql(FAULTS))["participantFaults"] == []  # the three failures were used up

    await gql(ABORT, id=saga_id, reason="carrier gone")
    saga = await gql.wait_for_saga(saga_id, "FAILED")
    assert (saga["failureReason"], saga["order"]["status"]) == ("carrier gone", "CANCELLED")
    # Requested and never created, its shipment was withdrawn with the order.
    assert [s["status"] for s in saga["order"]["shipments"]] == ["CANCELLED"]
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 0}]


async def test_a_shipment_of_a_parked_saga_is_not_ready_to_dispatch_until_it_completes(
    gql: GraphQLClient,
) -> None:
    """Parked while creating its shipment, the saga may yet complete: its order is not cancelled, and
    a dispatch is refused as not ready, not as cancelled."""
    await stage(gql, "SHIPMENT", failNext=3)
    placed = await place(gql, 2)
    saga_id, order_id = placed["saga"]["id"], placed["order"]["id"]
    await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    shipment_id = (await gql(SHIPMENTS, id=order_id))["order"]["shipments"][0]["id"]

    early = (await gql(DISPATCH, id=shipment_id))["dispatchShipment"]

    assert [e["code"] for e in early["userErrors"]] == ["SHIPMENT_NOT_READY"]
    assert (await gql(SHIPMENTS, id=order_id))["order"]["status"] == "CONFIRMED"
    assert (await gql(RETRY, id=saga_id))["retrySaga"]["userErrors"] == []
    await gql.wait_for_saga(saga_id, "COMPLETED")
    dispatched = (await gql(DISPATCH, id=shipment_id))["dispatchShipment"]
    assert dispatched["userErrors"] == [] and dispatched["order"]["status"] == "SHIPPED"


async def test_the_customer_cancels_before_the_dispatch_but_not_after(gql: GraphQLClient) -> None:
    await stage(gql, "SHIPMENT", delayMs=60_000)
    first = await place(gql, 2)
    await gql.wait_for_saga(first["saga"]["id"], "SHIPMENT_CREATING")
    await gql(CLEAR)

    cancelled = (await gql(CANCEL, id=first["order"]["id"]))["cancelOrder"]
    assert cancelled["userErrors"] == [] and cancelled["saga"]["status"] in ("COMPENSATING", "FAILED")
    # The answer is consistent: a saga turning back for a cancellation, its order being cancelled;
    # one turned back, its order cancelled.
    assert {"COMPENSATING": "CANCELLING", "FAILED": "CANCELLED"}[cancelled["saga"]["status"]] == (
        cancelled["order"]["status"]
    )
    saga = await gql.wait_for_saga(first["saga"]["id"], "FAILED")
    assert (saga["failureReason"], saga["order"]["status"]) == (CUSTOMER_CANCELLED, "CANCELLED")
    assert [e["reason"] for e in saga["events"] if e["type"] == "CustomerCancelled"] == [CUSTOMER_CANCELLED]
    assert [s["status"] for s in saga["order"]["shipments"]] == ["CANCELLED"]
    again = (await gql(CANCEL, id=first["order"]["id"]))["cancelOrder"]
    assert codes(again) == [("ORDER_ALREADY_CANCELLED", "orderId")]

    second = await place(gql, 3)
    saga = await gql.wait_for_saga(second["saga"]["id"], "COMPLETED")
    dispatch = "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) { userErrors { code } } }"
    dispatched = await gql(dispatch, id=saga["order"]["shipment"]["id"])
    assert dispatched["dispatchShipment"]["userErrors"] == []
    shipped = (await gql(CANCEL, id=second["order"]["id"]))["cancelOrder"]
    assert (shipped["order"], codes(shipped)) == (None, [("ORDER_ALREADY_SHIPPED", "orderId")])
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 2, "reserved": 0}]
    unknown = (await gql(CANCEL, id="no-such-order"))["cancelOrder"]
    assert codes(unknown) == [("UNKNOWN_ORDER", "orderId")]


async def test_a_cancellation_whose_compensation_is_parked_reads_cancelling_until_it_is_done(
    gql: GraphQLClient,
) -> None:
    placed = await place(gql, 2)
    saga = await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
    await stage(gql, "ORDERS", failureRate=1.0)
    assert (await gql(CANCEL, id=placed["order"]["id"]))["cancelOrder"]["userErrors"] == []
    saga = await gql.wait_for_saga(saga["id"], "NEEDS_ATTENTION")
    # Its stock is released (RELEASE_STOCK runs first), but the order itself is not cancelled: the
    # CANCEL_ORDER step used up its attempts. The order says so, and it is not shipped either.
    assert saga["failureReason"].startswith("CANCEL_ORDER failed after 3 attempts")
    assert saga["order"]["status"] == "CANCELLING"
    orders = "query ($s: [OrderStatus!]) { orders(first: 5, status: $s) { edges { node { id } } } }"
    listed = (await gql(orders, s=["CANCELLING"]))["orders"]["edges"]
    assert [e["node"]["id"] for e in listed] == [placed["order"]["id"]]
    assert (await gql(orders, s=["CANCELLED"]))["orders"]["edges"] == []

    await gql(CLEAR)
    await gql(RETRY, id=saga["id"])
    saga = await gql.wait_for_saga(saga["id"], "FAILED")
    assert saga["order"]["status"] == "CANCELLED"
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 0}]


async def test_faults_are_validated_listed_and_cleared(gql: GraphQLClient) -> None:
    bad = {"participant": "INVENTORY", "delayMs": -1, "failNext": -2, "failureRate": 1.5}
    refused = (await gql(FAULT, input=bad))["setParticipantFault"]
    assert refused["faults"] is None
    assert codes(refused) == [
        ("OUT_OF_RANGE", "delayMs"),
        ("OUT_OF_RANGE", "failNext"),
        ("OUT_OF_RANGE", "failureRate"),
    ]
    assert (await gql(FAULTS))["participantFaults"] == []

    await stage(gql, "SHIPMENT", failureRate=0.25)
    staged = await stage(gql, "INVENTORY", delayMs=1500, failNext=2)
    assert staged == [
        {"participant": "INVENTORY", "delayMs": 1500, "failNext": 2, "failureRate": 0.0},
        {"participant": "SHIPMENT", "delayMs": 0, "failNext": 0, "failureRate": 0.25},
    ]
    assert (await gql(FAULTS))["participantFaults"] == staged
    assert await stage(gql, "INVENTORY") == staged[1:]
    await gql(CLEAR)
    assert (await gql(FAULTS))["participantFaults"] == []


async def test_a_bounded_limit_is_required_to_list_sagas_needing_attention(gql: GraphQLClient) -> None:
    for limit in (0, 201):
        response = await gql.http.post("/graphql", json={"query": ATTENTION, "variables": {"limit": limit}})
        assert response.json()["errors"][0]["message"] == "limit must be between 1 and 200"


async def test_without_fault_injection_the_fault_mutations_refuse_and_change_nothing(
    database_url: str,
) -> None:
    async for gql in serve_client(database_url, fault_injection=False):
        refused = (await gql(FAULT, input={"participant": "SHIPMENT", "failNext": 5}))["setParticipantFault"]
        assert (refused["faults"], codes(refused)) == (None, [("FAULT_INJECTION_DISABLED", None)])
        cleared = (await gql(CLEAR))["clearParticipantFaults"]
        assert codes(cleared) == [("FAULT_INJECTION_DISABLED", None)]
        assert (await gql(FAULTS))["participantFaults"] == []

        placed = await place(gql, 1)
        saga = await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
        assert all(s["attempts"] == 1 for s in saga["steps"])
