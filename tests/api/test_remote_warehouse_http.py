"""A remote warehouse service over real HTTP, on SQLite and PostgreSQL: a warehouse stub on loopback
(tests/warehouse.py) verifies every command's signature and answers each way a warehouse may. The
saga completes on a synchronous creation and on a 202 followed by a report; compensates on a refusal,
cancelling the other warehouse's shipment; retries transient errors with the same command id; times
out on silence; and takes a duplicate report as nothing and a late one as a coded refusal. What the
commands did shows in sagaMetrics.warehouseCommands and in /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from api.access.auth import Role, mint_token
from api.service import Service
from api.settings import Settings
from domain.model.saga import SagaPolicy
from tests.api.server import SAGA, GraphQLClient, graphql_client, stage
from tests.api.test_observability_http import samples
from tests.api.tokens import ADMIN, AUTH, SECRET, Caller, served
from tests.warehouse import (
    ACCEPTED,
    NOT_FOUND,
    SILENT,
    WarehouseStub,
    compressed,
    endless,
    failing,
    rejected,
)

POLICY = SagaPolicy(
    reserve_timeout=timedelta(seconds=2),
    confirm_timeout=timedelta(seconds=2),
    shipment_timeout=timedelta(seconds=3),
    retry_backoff=timedelta(milliseconds=50),
)

# For the tests that wait out every attempt at the shipment.
SHORT_SHIPMENT = replace(POLICY, shipment_timeout=timedelta(milliseconds=600))

CATALOG = """
mutation {
  w1: registerWarehouse(
    input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]}
  ) { userErrors { code } }
  w2: registerWarehouse(
    input: {code: "W2", name: "Two", sections: [{code: "B", storageCondition: AMBIENT}]}
  ) { userErrors { code } }
  p: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) { userErrors { code } }
  r1: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 1}) {
    userErrors { code } }
  r2: receiveStock(input: {sku: "TEA", warehouseCode: "W2", sectionCode: "B", quantity: 1}) {
    userErrors { code } }
}
"""
PLACE = """
mutation ($quantity: Int!) {
  placeOrder(input: {customerId: "c-1", lines: [{sku: "TEA", quantity: $quantity}]}) {
    saga { id } order { id } userErrors { code } }
}
"""
ORDER = """
query ($id: ID!) {
  order(id: $id) {
    status
    shipments { id warehouseCode status reference awaitingSince }
  }
}
"""
REPORT = """
mutation ($input: ReportShipmentOutcomeInput!) {
  reportShipmentOutcome(input: $input) {
    shipment { id status reference } order { status } userErrors { code field message }
  }
}
"""
STOCK = "{ products { sku onHand reserved available } }"
CANCEL = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { userErrors { code } } }"
FAILURES = "query ($id: ID!) { saga(id: $id) { events { type reason } } }"
COMMANDS = """
{
  sagaMetrics {
    warehouseCommands {
      warehouseCode type sent outcomes { outcome count }
      latencyMsAverage latencyMsMax lastLatencyMs lastResponse lastAt
    }
  }
}
"""
# Names the process in every /metrics sample.
INSTANCE = "warehouse-test"


def served_by(stub: WarehouseStub, database_url: str, policy: SagaPolicy = POLICY, **more: Any) -> Settings:
    """A service whose every warehouse is the stub's (serve --warehouse-service-url)."""
    return Settings(
        database_url=database_url,
        policy=policy,
        warehouse_service_url=stub.url,
        warehouse_service_secret=stub.secret,
        instance=INSTANCE,
        **more,
    )


@contextlib.asynccontextmanager
async def warehouse_and_service(
    database_url: str, policy: SagaPolicy = POLICY
) -> AsyncIterator[tuple[WarehouseStub, GraphQLClient]]:
    """Both warehouses served by the stub (serve --warehouse-service-url), one TEA in each."""
    stub = WarehouseStub()
    async with (
        stub.running(),
        graphql_client(Service(served_by(stub, database_url, policy)), timeout=30) as gql,
    ):
        assert all(not field["userErrors"] for field in (await gql(CATALOG)).values())
        yield stub, gql


async def place(gql: GraphQLClient, quantity: int) -> tuple[str, str]:
    placed = (await gql(PLACE, quantity=quantity))["placeOrder"]
    return placed["saga"]["id"], placed["order"]["id"]


async def order(gql: GraphQLClient, order_id: str) -> dict[str, Any]:
    return (await gql(ORDER, id=order_id))["order"]  # type: ignore[no-any-return]


async def report(gql: GraphQLClient, **input: Any) -> dict[str, Any]:
    return (await gql(REPORT, input=input))["reportShipmentOutcome"]  # type: ignore[no-any-return]


async def stock_of(gql: GraphQLClient) -> dict[str, int]:
    (tea,) = (await gql(STOCK))["products"]
    return {k: tea[k] for k in ("onHand", "reserved", "available")}


async def test_a_synchronous_creation_completes_the_saga_with_the_warehouses_reference(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        saga_id, order_id = await place(gql, 1)

        await gql.wait_for_saga(saga_id, "COMPLETED")

        (command,) = stub.of_type("CreateShipment")
        assert command.id == f"{saga_id}:CREATE_SHIPMENT:W1" == command.idempotency_key
        assert command.body["picks"] == [{"sectionCode": "A", "sku": "TEA", "quantity": 1}]
        assert (command.body["sagaId"], command.body["orderId"]) == (saga_id, order_id)
        (shipment,) = (await order(gql, order_id))["shipments"]
        assert shipment == {**shipment, "status": "CREATED", "reference": "WMS-W1", "awaitingSince": None}
        assert command.body["shipmentId"] == shipment["id"]
        assert stub.refused == []


async def test_both_warehouses_get_their_commands_before_either_answers_and_a_refusal_cancels_the_other(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.held = asyncio.Event()
        stub.script["W2"] = [rejected("no carrier today")]
        saga_id, order_id = await place(gql, 2)

        await stub.wait_for("CreateShipment", 2)  # both on the wire, neither answered
        stub.held.set()

        await gql.wait_for_saga(saga_id, "FAILED")
        assert [c.warehouse for c in stub.of_type("CancelShipment")] == ["W1"]
        statuses = {s["warehouseCode"]: s["status"] for s in (await order(gql, order_id))["shipments"]}
        assert statuses == {"W1": "CANCELLED", "W2": "REJECTED"}
        assert await stock_of(gql) == {"onHand": 2, "reserved": 0, "available": 2}


async def test_an_accepted_command_waits_for_the_report_which_completes_the_saga_once(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [ACCEPTED]
        saga_id, order_id = await place(gql, 1)
        await stub.wait_for("CreateShipment", 1)
        (waiting,) = (await order(gql, order_id))["shipments"]
        for _ in range(100):
            if waiting["awaitingSince"] is not None:
                break
            await asyncio.sleep(0.02)
            (waiting,) = (await order(gql, order_id))["shipments"]
        assert waiting["status"] == "REQUESTED" and waiting["awaitingSince"] is not None

        command_id = stub.of_type("CreateShipment")[0].id
        answered = await report(gql, commandId=command_id, outcome="CREATED", reference="WMS-77")
        again = await report(gql, commandId=command_id, outcome="CREATED", reference="WMS-77")

        assert answered["userErrors"] == [] and again["userErrors"] == []
        assert answered["shipment"] == {"id": waiting["id"], "status": "CREATED", "reference": "WMS-77"}
        assert answered["order"]["status"] == "CONFIRMED"
        await gql.wait_for_saga(saga_id, "COMPLETED")
        assert len(stub.of_type("CreateShipment")) == 1  # the wait sent nothing more
        other = await report(gql, commandId=command_id, outcome="REJECTED", reason="changed our mind")
        assert [e["code"] for e in other["userErrors"]] == ["OUTCOME_NOT_AWAITED"]


async def test_a_reported_refusal_turns_the_saga_back(database_url: str) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [ACCEPTED]
        saga_id, _ = await place(gql, 1)
        await stub.wait_for("CreateShipment", 1)
        command_id = stub.of_type("CreateShipment")[0].id

        refused = await report(gql, commandId=command_id, outcome="REJECTED", reason="blocked address")

        assert refused["userErrors"] == [] and refused["shipment"]["status"] == "REJECTED"
        saga = await gql.wait_for_saga(saga_id, "FAILED")
        assert "blocked address" in saga["failureReason"]


async def test_transient_errors_are_retried_with_the_same_command_id_until_created(database_url: str) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [failing(503), failing(429, "0")]
        saga_id, _ = await place(gql, 1)

        await gql.wait_for_saga(saga_id, "COMPLETED")

        sent = stub.of_type("CreateShipment")
        assert len(sent) == 3 and len({c.id for c in sent}) == 1


async def test_an_answer_too_long_to_read_is_not_read_and_the_command_is_sent_again(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [endless(64)]
        saga_id, _ = await place(gql, 1)

        await gql.wait_for_saga(saga_id, "COMPLETED")

        assert len(stub.of_type("CreateShipment", "W1")) == 2
        events = (await gql(FAILURES, id=saga_id))["saga"]["events"]
        assert [e["reason"] for e in events if e["type"] == "StepFailed"] == [
            "an answer of more than 65536 bytes, not read"
        ]
        listed = (await gql(COMMANDS))["sagaMetrics"]["warehouseCommands"]
        created = next(c for c in listed if (c["warehouseCode"], c["type"]) == ("W1", "CreateShipment"))
        assert created["outcomes"] == [
            {"outcome": "CREATED", "count": 1},
            {"outcome": "UNAVAILABLE", "count": 1},
        ]


async def test_a_compressed_answer_is_not_decompressed_and_reads_as_no_answer(database_url: str) -> None:
    # 32 MiB of zeros, gzipped to about 32 KiB: under the bound as it comes, far over it decompressed.
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [compressed(32)]
        saga_id, _ = await place(gql, 1)

        await gql.wait_for_saga(saga_id, "COMPLETED")

        events = (await gql(FAILURES, id=saga_id))["saga"]["events"]
        assert [e["reason"] for e in events if e["type"] == "StepFailed"] == [
            "HTTP 200 without a status CREATED or REJECTED"
        ]


async def test_a_silent_warehouse_times_the_step_out_and_the_saga_waits_for_an_operator(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W1"] = [SILENT] * 3
        saga_id, _ = await place(gql, 1)

        saga = await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)

        # One command an attempt, the same each time; an attempt whose time ran out before its
        # command could leave (a slow commit on a loaded machine) sends none.
        sent = stub.of_type("CreateShipment")
        assert 1 <= len(sent) <= 3 and len({c.id for c in sent}) == 1
        assert "CREATE_SHIPMENT" in saga["failureReason"]


async def test_a_report_after_the_step_timed_out_is_refused_and_changes_nothing(database_url: str) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W1"] = [ACCEPTED] * 3
        saga_id, order_id = await place(gql, 1)
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)
        before = await order(gql, order_id)

        late = await report(gql, commandId=f"{saga_id}:CREATE_SHIPMENT:W1", outcome="CREATED")

        assert [e["code"] for e in late["userErrors"]] == ["OUTCOME_NOT_AWAITED"]
        assert await order(gql, order_id) == before


@pytest.mark.parametrize(
    ("input", "code", "field"),
    [
        ({"commandId": "nonsense", "outcome": "CREATED"}, "UNKNOWN_COMMAND", "commandId"),
        ({"commandId": "", "outcome": "CREATED"}, "REQUIRED", "commandId"),
        ({"commandId": "x:CANCEL_SHIPMENT:W1", "outcome": "CREATED"}, "UNKNOWN_COMMAND", "commandId"),
        (
            {"commandId": "00000000-0000-0000-0000-000000000000:CREATE_SHIPMENT:W1", "outcome": "CREATED"},
            "UNKNOWN_COMMAND",
            "commandId",
        ),
        ({"commandId": "s:CREATE_SHIPMENT:W1", "outcome": "REJECTED"}, "REQUIRED", "reason"),
        (
            {"commandId": "s:CREATE_SHIPMENT:W1", "outcome": "CREATED", "reference": "x" * 201},
            "TOO_LONG",
            "reference",
        ),
        (
            {"commandId": "s:CREATE_SHIPMENT:W1", "outcome": "CREATED", "reference": "a\x00b"},
            "INVALID_TEXT",
            "reference",
        ),
    ],
)
async def test_bad_input_on_a_report_is_refused_with_its_code(
    gql: GraphQLClient, input: dict[str, Any], code: str, field: str
) -> None:
    answer = await report(gql, **input)
    assert [(e["code"], e["field"]) for e in answer["userErrors"]] == [(code, field)]
    assert answer["shipment"] is None


REGISTER_REMOTE = """
mutation ($url: String) {
  registerWarehouse(input: {code: "W3", name: "Three", sections: [], serviceUrl: $url}) {
    warehouse { code serviceUrl } userErrors { code field } }
}
"""
UPDATE = """
mutation ($input: UpdateWarehouseInput!) {
  updateWarehouse(input: $input) { warehouse { code name serviceUrl } userErrors { code field } }
}
"""


async def test_a_warehouse_of_its_own_url_is_remote_while_the_others_stay_built_in(database_url: str) -> None:
    stub = WarehouseStub()
    settings = Settings(database_url=database_url, policy=POLICY, warehouse_service_secret=stub.secret)
    async with stub.running(), graphql_client(Service(settings), timeout=30) as gql:
        await gql(CATALOG)
        changed = (await gql(UPDATE, input={"code": "W2", "serviceUrl": stub.url}))["updateWarehouse"]
        assert changed == {
            "warehouse": {"code": "W2", "name": "Two", "serviceUrl": stub.url},
            "userErrors": [],
        }
        saga_id, order_id = await place(gql, 2)

        await gql.wait_for_saga(saga_id, "COMPLETED")

        assert [c.warehouse for c in stub.of_type("CreateShipment")] == ["W2"]
        shipments = {s["warehouseCode"]: s for s in (await order(gql, order_id))["shipments"]}
        assert (shipments["W1"]["status"], shipments["W1"]["reference"]) == ("CREATED", None)
        assert (shipments["W2"]["status"], shipments["W2"]["reference"]) == ("CREATED", "WMS-W2")

        back = await gql(UPDATE, input={"code": "W2", "serviceUrl": None})
        assert back["updateWarehouse"]["warehouse"]["serviceUrl"] is None
        await gql(
            'mutation { receiveStock(input: {sku: "TEA", warehouseCode: "W2", sectionCode: "B", '
            "quantity: 1}) { userErrors { code } } }"
        )
        again, _ = await place(gql, 1)
        await gql.wait_for_saga(again, "COMPLETED")
        assert len(stub.of_type("CreateShipment")) == 1  # built in again: nothing more was sent


async def test_a_service_url_needs_a_signing_secret_and_a_valid_url(database_url: str) -> None:
    async with graphql_client(Service(Settings(database_url=database_url)), timeout=30) as gql:
        unsigned = (await gql(REGISTER_REMOTE, url="http://127.0.0.1:9/commands"))["registerWarehouse"]
        assert unsigned == {
            "warehouse": None,
            "userErrors": [{"code": "SIGNING_NOT_CONFIGURED", "field": "serviceUrl"}],
        }
    stub = WarehouseStub()
    settings = Settings(database_url=database_url, warehouse_service_secret=stub.secret)
    async with graphql_client(Service(settings), timeout=30) as gql:
        for url in ("ftp://example.com/x", "http://user:pw@example.com/", "not a url", "x" * 3000):
            refused = (await gql(REGISTER_REMOTE, url=url))["registerWarehouse"]
            assert refused["userErrors"] == [{"code": "INVALID_URL", "field": "serviceUrl"}], url
        taken = (await gql(REGISTER_REMOTE, url=stub.url))["registerWarehouse"]
        assert taken == {"warehouse": {"code": "W3", "serviceUrl": stub.url}, "userErrors": []}
        listed = (await gql("{ warehouses { code serviceUrl } }"))["warehouses"]
        assert listed == [{"code": "W3", "serviceUrl": stub.url}]
        unknown = (await gql(UPDATE, input={"code": "W9", "name": "Nine"}))["updateWarehouse"]
        assert unknown == {"warehouse": None, "userErrors": [{"code": "UNKNOWN_WAREHOUSE", "field": "code"}]}
        blank = (await gql(UPDATE, input={"code": "W3", "name": " "}))["updateWarehouse"]
        assert blank["userErrors"] == [{"code": "REQUIRED", "field": "name"}]


async def test_a_service_url_must_lead_to_an_address_the_service_may_send_to(database_url: str) -> None:
    stub = WarehouseStub()
    settings = Settings(database_url=database_url, warehouse_service_secret=stub.secret)
    private = ("http://10.0.0.1/commands", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/x")
    async with graphql_client(Service(settings), timeout=30) as gql:
        await gql(CATALOG)
        for url in (*private, "http://nowhere.invalid/commands"):
            refused = (await gql(REGISTER_REMOTE, url=url))["registerWarehouse"]
            assert refused["userErrors"] == [{"code": "URL_NOT_ALLOWED", "field": "serviceUrl"}], url
            moved = (await gql(UPDATE, input={"code": "W2", "serviceUrl": url}))["updateWarehouse"]
            assert moved["userErrors"] == [{"code": "URL_NOT_ALLOWED", "field": "serviceUrl"}], url
        # Loopback, in development mode (no authentication configured).
        assert (await gql(REGISTER_REMOTE, url=stub.url))["registerWarehouse"]["userErrors"] == []
    allowed = replace(settings, allow_private_warehouse_urls=True)
    async with graphql_client(Service(allowed), timeout=30) as gql:
        moved = (await gql(UPDATE, input={"code": "W2", "serviceUrl": private[0]}))["updateWarehouse"]
        assert moved["userErrors"] == [] and moved["warehouse"]["serviceUrl"] == private[0]


async def test_a_command_to_an_address_no_longer_allowed_is_not_sent(database_url: str) -> None:
    """A URL stored while private addresses were allowed (or before they were refused) is not sent to
    once they are not: the command is transient, and the saga waits for an operator."""
    stub = WarehouseStub()
    settings = Settings(
        database_url=database_url,
        policy=SHORT_SHIPMENT,
        warehouse_service_secret=stub.secret,
        allow_private_warehouse_urls=True,
    )
    async with graphql_client(Service(settings), timeout=30) as gql:
        await gql(CATALOG)
        await gql(UPDATE, input={"code": "W2", "serviceUrl": "http://10.0.0.1:9/commands"})
    refusing = replace(settings, allow_private_warehouse_urls=False)
    async with graphql_client(Service(refusing), timeout=30) as gql:
        saga_id, _ = await place(gql, 2)

        saga = await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)

        events = (await gql(FAILURES, id=saga_id))["saga"]["events"]
        reasons = {e["reason"] for e in events if e["type"] == "StepFailed"}
        assert reasons == {
            "not sent: 10.0.0.1 resolves to 10.0.0.1, which is not a public address "
            "(serve --allow-private-warehouse-urls to allow it)"
        }, saga


async def test_each_commands_attempts_outcomes_latency_and_last_response_show_in_metrics(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url) as (stub, gql):
        stub.script["W1"] = [failing(503), ACCEPTED]
        saga_id, order_id = await place(gql, 2)
        await stub.wait_for("CreateShipment", 2, warehouse="W1")
        await report(gql, commandId=f"{saga_id}:CREATE_SHIPMENT:W1", outcome="CREATED")
        await gql.wait_for_saga(saga_id, "COMPLETED")
        assert (await gql(CANCEL, id=order_id))["cancelOrder"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "FAILED")

        listed = (await gql(COMMANDS))["sagaMetrics"]["warehouseCommands"]
        metrics = samples((await gql.http.get("/metrics")).text, INSTANCE)

    shown = {(c["warehouseCode"], c["type"]): (c["sent"], c["outcomes"], c["lastResponse"]) for c in listed}
    assert shown == {
        ("W1", "CancelShipment"): (1, [{"outcome": "CANCELLED", "count": 1}], "HTTP 200: CANCELLED"),
        ("W1", "CreateShipment"): (
            2,
            [{"outcome": "ACCEPTED", "count": 1}, {"outcome": "UNAVAILABLE", "count": 1}],
            "HTTP 202: ACCEPTED",
        ),
        ("W2", "CancelShipment"): (1, [{"outcome": "CANCELLED", "count": 1}], "HTTP 200: CANCELLED"),
        ("W2", "CreateShipment"): (1, [{"outcome": "CREATED", "count": 1}], "HTTP 200: CREATED"),
    }
    assert [(c["warehouseCode"], c["type"]) for c in listed] == sorted(shown)
    for c in listed:
        assert 0 < c["lastLatencyMs"] <= c["latencyMsMax"] and c["latencyMsAverage"] <= c["latencyMsMax"], c
        assert c["lastAt"] is not None
    counts = {
        tuple(dict(labels)[k] for k in ("warehouse", "type", "outcome")): value
        for (name, labels), value in metrics.items()
        if name == "ordersaga_warehouse_command_seconds_count"
    }
    assert counts == {
        ("W1", "CreateShipment", "UNAVAILABLE"): 1,
        ("W1", "CreateShipment", "ACCEPTED"): 1,
        ("W2", "CreateShipment", "CREATED"): 1,
        ("W1", "CancelShipment", "CANCELLED"): 1,
        ("W2", "CancelShipment", "CANCELLED"): 1,
    }


ABORT = 'mutation ($id: ID!) { abortSaga(input: {sagaId: $id, reason: "review"}) { userErrors { code } } }'


async def test_abort_after_the_step_gave_up_sends_the_cancel_of_a_shipment_the_warehouse_accepted(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W1"] = [ACCEPTED, SILENT, SILENT]
        saga_id, order_id = await place(gql, 1)
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)
        assert (await gql(ABORT, id=saga_id))["abortSaga"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "FAILED", seconds=30)
        # The warehouse accepted CreateShipment (202) and may hold the shipment: its cancel must be sent.
        assert stub.of_type("CancelShipment"), await order(gql, order_id)


async def test_cancel_during_a_second_attempt_sends_the_cancel_of_a_shipment_accepted_in_the_first(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W1"] = [ACCEPTED, SILENT, SILENT]
        saga_id, order_id = await place(gql, 1)
        await stub.wait_for("CreateShipment", 2, seconds=30)  # attempt 2 on the wire
        assert (await gql(CANCEL, id=order_id))["cancelOrder"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "FAILED", seconds=30)
        assert stub.of_type("CancelShipment"), await order(gql, order_id)


async def test_a_report_cannot_create_a_built_in_warehouses_shipment(database_url: str) -> None:
    stub = WarehouseStub()
    settings = Settings(database_url=database_url, policy=POLICY, warehouse_service_secret=stub.secret)
    async with stub.running(), graphql_client(Service(settings), timeout=30) as gql:
        await gql(CATALOG)
        await gql(UPDATE, input={"code": "W1", "serviceUrl": stub.url})  # W2 stays built in
        stub.script["W1"] = [SILENT]
        saga_id, _ = await place(gql, 2)
        await stub.wait_for("CreateShipment", 1)
        answered = await report(
            gql, commandId=f"{saga_id}:CREATE_SHIPMENT:W2", outcome="CREATED", reference="forged"
        )
        assert [e["code"] for e in answered["userErrors"]] == ["UNKNOWN_COMMAND"]  # W2 is built in


async def test_a_shipment_whose_command_got_no_answer_is_cancelled_when_the_saga_turns_back(
    database_url: str,
) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        # W1's warehouse may have acted on its command, but its answer never comes; W2's refuses.
        stub.script["W1"] = [SILENT]
        stub.script["W2"] = [rejected("no carrier today")]
        saga_id, order_id = await place(gql, 2)

        await gql.wait_for_saga(saga_id, "FAILED", seconds=30)

        assert [c.warehouse for c in stub.of_type("CancelShipment")] == ["W1"]
        statuses = {s["warehouseCode"]: s["status"] for s in (await order(gql, order_id))["shipments"]}
        assert statuses == {"W1": "CANCELLED", "W2": "REJECTED"}
        assert await stock_of(gql) == {"onHand": 2, "reserved": 0, "available": 2}


async def test_a_cancel_the_warehouse_answers_with_no_such_shipment_is_done(database_url: str) -> None:
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W1"] = [SILENT]
        stub.script["W2"] = [rejected("no carrier today")]
        stub.cancel_script["W1"] = [NOT_FOUND]  # the create never reached it
        saga_id, _ = await place(gql, 2)

        saga = await gql.wait_for_saga(saga_id, "FAILED", seconds=30)

        assert len(stub.of_type("CancelShipment")) == 1
        assert "no carrier today" in saga["failureReason"]


async def test_a_bare_404_to_a_cancel_is_no_proof_that_the_shipment_does_not_exist(database_url: str) -> None:
    """A 404 that does not say NOT_FOUND may come from a service that is gone (its warehouse moved
    on): the cancel is refused, and the saga waits for an operator rather than forget the shipment."""
    async with warehouse_and_service(database_url, SHORT_SHIPMENT) as (stub, gql):
        stub.script["W2"] = [rejected("no carrier today")]  # W1's is created
        stub.cancel_script["W1"] = [failing(404)]
        saga_id, order_id = await place(gql, 2)

        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)

        statuses = {s["warehouseCode"]: s["status"] for s in (await order(gql, order_id))["shipments"]}
        assert statuses == {"W1": "CREATED", "W2": "REJECTED"}


@contextlib.asynccontextmanager
async def two_services(
    database_url: str,
) -> AsyncIterator[tuple[WarehouseStub, WarehouseStub, GraphQLClient]]:
    """Two warehouse services that share a secret, for a warehouse that moves from one to the other;
    no warehouse has a URL yet."""
    first, second = WarehouseStub(), WarehouseStub()
    second.secret = first.secret
    settings = Settings(
        database_url=database_url, policy=SHORT_SHIPMENT, warehouse_service_secret=first.secret
    )
    async with first.running(), second.running(), graphql_client(Service(settings), timeout=30) as gql:
        await gql(CATALOG)
        yield first, second, gql


async def test_an_accepted_shipment_stays_with_the_service_it_was_sent_to_when_its_url_changes(
    database_url: str,
) -> None:
    async with two_services(database_url) as (first, second, gql):
        await gql(UPDATE, input={"code": "W1", "serviceUrl": first.url})
        first.script["W1"] = [ACCEPTED, SILENT, SILENT]
        saga_id, order_id = await place(gql, 1)
        await first.wait_for("CreateShipment", 1)
        moved = await gql(UPDATE, input={"code": "W1", "serviceUrl": second.url})
        assert moved["updateWarehouse"]["userErrors"] == []

        # Its deadline passes unanswered: the later attempts go where the first went.
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)
        assert len(first.of_type("CreateShipment")) == 3 and not second.commands
        # Its cancel goes there too.
        assert (await gql(ABORT, id=saga_id))["abortSaga"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "FAILED", seconds=30)
        assert [c.warehouse for c in first.of_type("CancelShipment")] == ["W1"] and not second.commands
        assert (await order(gql, order_id))["shipments"][0]["status"] == "CANCELLED"

        # A new order's shipment (from W1 again, its stock released) goes where the catalog says now.
        again, _ = await place(gql, 1)
        await gql.wait_for_saga(again, "COMPLETED", seconds=30)
        assert [c.warehouse for c in second.of_type("CreateShipment")] == ["W1"]


async def test_a_step_in_flight_with_no_route_is_routed_before_its_command_leaves(database_url: str) -> None:
    """A CREATE_SHIPMENT started with no route (here the built-in warehouse's, stopped while its call
    was held up; or one started under a journal written before routes were journalled) and resumed
    with its warehouse now remote: the route is committed before the command leaves, so its
    resends, its cancel and the report that answers its 202 all go with that one service."""
    stub = WarehouseStub()
    slow = Settings(
        database_url=database_url,
        policy=replace(POLICY, shipment_timeout=timedelta(seconds=30)),
        fault_injection=True,
    )
    async with graphql_client(Service(slow), timeout=30) as gql:
        await gql(CATALOG)
        await stage(gql, "SHIPMENT", delayMs=60_000)
        saga_id, order_id = await place(gql, 1)
        for _ in range(500):
            steps = {s["name"]: s["status"] for s in (await gql(SAGA, id=saga_id))["saga"]["steps"]}
            if "CREATE_SHIPMENT" in steps:
                break
            await asyncio.sleep(0.01)
        assert steps.get("CREATE_SHIPMENT") == "RUNNING", steps

    remote = replace(
        slow, fault_injection=False, warehouse_service_url=stub.url, warehouse_service_secret=stub.secret
    )
    async with stub.running(), graphql_client(Service(remote), timeout=30) as gql:
        stub.script["W1"] = [ACCEPTED]
        await stub.wait_for("CreateShipment", 1)
        (command,) = stub.of_type("CreateShipment")
        answered = await report(gql, commandId=command.id, outcome="CREATED", reference="WMS-7")

        assert answered["userErrors"] == []
        await gql.wait_for_saga(saga_id, "COMPLETED")
        (shipment,) = (await order(gql, order_id))["shipments"]
        assert (shipment["status"], shipment["reference"]) == ("CREATED", "WMS-7")
        events = [e["type"] for e in (await gql(SAGA, id=saga_id))["saga"]["events"]]
        assert events.index("ShipmentRouted") < events.index("ShipmentAccepted")


RETRY = """
mutation ($id: ID!, $reroute: Boolean!) {
  retrySaga(input: {sagaId: $id, reroute: $reroute}) { saga { status } userErrors { code field } }
}
"""


async def test_a_rerouted_retry_sends_a_shipment_on_to_the_service_its_warehouse_moved_to(
    database_url: str,
) -> None:
    """The cancel of a created shipment goes to the service its create went to, which is gone (a bare
    404): the saga waits for an operator, who names the warehouse's new service and retries with
    reroute. A plain retry keeps the route; a warehouse with no service at all cannot take it."""
    async with two_services(database_url) as (gone, moved, gql):
        for code in ("W1", "W2"):
            await gql(UPDATE, input={"code": code, "serviceUrl": gone.url})
        gone.script["W2"] = [rejected("no carrier today")]  # W1's is created
        gone.cancel_script["W1"] = [failing(404)] * 6
        saga_id, order_id = await place(gql, 2)
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)

        await gql(UPDATE, input={"code": "W1", "serviceUrl": None})
        refused = (await gql(RETRY, id=saga_id, reroute=True))["retrySaga"]
        assert refused["userErrors"] == [{"code": "NO_WAREHOUSE_SERVICE", "field": "sagaId"}]
        await gql(UPDATE, input={"code": "W1", "serviceUrl": moved.url})
        assert (await gql(RETRY, id=saga_id, reroute=False))["retrySaga"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION", seconds=30)
        assert not moved.commands  # a plain retry went where the first cancel went

        assert (await gql(RETRY, id=saga_id, reroute=True))["retrySaga"]["userErrors"] == []
        await gql.wait_for_saga(saga_id, "FAILED", seconds=30)

        assert [c.type for c in moved.commands] == ["CancelShipment"]
        statuses = {s["warehouseCode"]: s["status"] for s in (await order(gql, order_id))["shipments"]}
        assert statuses == {"W1": "CANCELLED", "W2": "REJECTED"}
        assert await stock_of(gql) == {"onHand": 2, "reserved": 0, "available": 2}


async def test_a_warehouse_token_speaks_only_for_the_warehouses_it_names(database_url: str) -> None:
    """A `warehouse` token with a `warehouses` claim: another warehouse's command and shipment are
    unknown to it, as if they did not exist; its own are reported and dispatched."""
    stub = WarehouseStub()
    settings = served_by(stub, database_url, auth=AUTH)
    only_w2 = mint_token(SECRET, "wms-two", [Role.WAREHOUSE], timedelta(minutes=5), warehouses=["W2"])
    async with stub.running(), served(settings) as service:
        admin, w2 = Caller(service.http, ADMIN), Caller(service.http, {"Authorization": f"Bearer {only_w2}"})
        await admin.data(CATALOG)
        stub.script = {"W1": [ACCEPTED], "W2": [ACCEPTED]}
        placed = (await admin.data(PLACE, quantity=2))["placeOrder"]
        saga_id = placed["saga"]["id"]
        await stub.wait_for("CreateShipment", 2)

        def reporting(code: str) -> dict[str, Any]:
            return {"commandId": f"{saga_id}:CREATE_SHIPMENT:{code}", "outcome": "CREATED", "reference": code}

        foreign = (await w2.data(REPORT, input=reporting("W1")))["reportShipmentOutcome"]
        assert [e["code"] for e in foreign["userErrors"]] == ["UNKNOWN_COMMAND"]
        own = (await w2.data(REPORT, input=reporting("W2")))["reportShipmentOutcome"]
        assert own["userErrors"] == [] and own["shipment"]["status"] == "CREATED"
        assert (await admin.data(REPORT, input=reporting("W1")))["reportShipmentOutcome"]["userErrors"] == []

        shipments = (await admin.data(ORDER, id=placed["order"]["id"]))["order"]["shipments"]
        ids = {s["warehouseCode"]: s["id"] for s in shipments}
        dispatch = (
            "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) { userErrors { code } } }"
        )
        assert (await w2.data(dispatch, id=ids["W1"]))["dispatchShipment"]["userErrors"] == [
            {"code": "UNKNOWN_SHIPMENT"}
        ]
        assert (await w2.data(dispatch, id=ids["W2"]))["dispatchShipment"]["userErrors"] == []
