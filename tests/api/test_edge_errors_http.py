"""How errors look to a client, over real HTTP and WebSocket on each database: unexpected errors are
masked with an id the log also holds; expected ones keep their message and code and are logged below
ERROR without a traceback; bad input of every kind is refused at the edge and changes nothing."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_nullable_type
from sqlalchemy import update

from api.graphql.edge.errors import MASKED_MESSAGE
from api.graphql.schema import schema
from api.service import Service
from api.settings import Settings
from domain.model.problems import MAX_COUNT
from persistence.connection import Db
from persistence.tables import stock as stock_table
from tests.api.server import PLACE, GraphQLClient, graphql_client, place, stock
from tests.api.subscriptions import subscriptions

NUL, LONE_SURROGATE = "a\x00b", "a\ud800b"
ORDERS_AFTER = "query ($at: DateTime) { orders(placedAfter: $at) { edges { node { id } } } }"
SAGAS_AFTER = "query ($after: String) { sagas(after: $after) { edges { node { id } } } }"
PRODUCTS = '{ products { sku onHand } stockLevels(sku: "TEA") { sectionCode onHand } }'


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[Service, GraphQLClient]]:
    svc = Service(Settings(database_url=database_url))
    async with graphql_client(svc) as gql:
        await stock(gql)
        yield svc, gql


async def answer(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    """The whole answer; the request's JSON escapes every non-ASCII character, as JSON may, so that
    a lone surrogate can be sent at all."""
    body = json.dumps({"query": query, "variables": variables})
    response = await gql.http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def ask(gql: GraphQLClient, query: str, **variables: Any) -> dict[str, Any]:
    body = await answer(gql, query, **variables)
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def refused(body: dict[str, Any]) -> str:
    """The single error's message, checked to be BAD_USER_INPUT with nothing internal in it."""
    assert codes(body) == ["BAD_USER_INPUT"], body
    message: str = body["errors"][0]["message"]
    for internal in ("SQL", "Error", "Traceback", "sqlalchemy", "asyncpg", "codec"):
        assert internal not in message, message
    return message


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="ordersaga")
    return caplog


def cursor_of(*position: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


# ------------------------------------------------------------------------------------------- masking


async def broken(*_: object) -> None:
    raise RuntimeError("SELECT secret FROM internals")


def assert_masked(error: dict[str, Any], log: pytest.LogCaptureFixture) -> None:
    """The error is masked, and the log holds its id with the traceback of what was masked."""
    assert error["message"] == MASKED_MESSAGE
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in json.dumps(error)
    logged = [r for r in log.records if r.levelno == logging.ERROR]
    assert [r.error_id for r in logged] == [error["extensions"]["errorId"]]  # type: ignore[attr-defined]
    assert logged[0].exc_info is not None and "SELECT secret" in str(logged[0].exc_info[1])


@pytest.mark.parametrize(
    ("part", "method", "operation"),
    [
        ("catalog", "products", "{ products { sku } }"),
        (
            "orchestrator",
            "place_order",
            'mutation { placeOrder(input: {customerId: "c", '
            'lines: [{sku: "TEA", quantity: 1}]}) { order { id } } }',
        ),
    ],
)
async def test_an_unexpected_error_is_masked_with_an_id_that_the_log_holds_with_its_traceback(
    served: tuple[Service, GraphQLClient],
    errors_logged: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    part: str,
    method: str,
    operation: str,
) -> None:
    svc, gql = served
    monkeypatch.setattr(getattr(svc, part), method, broken)
    (error,) = (await answer(gql, operation))["errors"]
    assert_masked(error, errors_logged)


async def test_an_unexpected_error_in_a_subscription_is_masked_on_the_socket_too(
    served: tuple[Service, GraphQLClient],
    errors_logged: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc, gql = served
    monkeypatch.setattr(svc.timeline, "latest_transition", broken)
    async with subscriptions(str(gql.http.base_url)) as ws:
        await ws.subscribe("1", 'subscription { sagaUpdates(sagaId: "x") { sequence } }')
        payload = await ws.next("1")
    assert payload is not None
    (error,) = payload["errors"]
    assert_masked(error, errors_logged)


async def test_expected_errors_keep_their_codes_and_are_logged_below_error_without_a_traceback(
    served: tuple[Service, GraphQLClient], errors_logged: pytest.LogCaptureFixture
) -> None:
    _, gql = served
    assert codes(await answer(gql, "{ sagas(first: 101) { edges { cursor } } }")) == ["BAD_USER_INPUT"]
    assert codes(await answer(gql, "{ sagas(")) == ["GRAPHQL_PARSE_FAILED"]
    assert codes(await answer(gql, "{ nothing }")) == ["GRAPHQL_VALIDATION_FAILED"]
    assert codes(await answer(gql, "query ($n: Int) { sagas(first: $n) { edges { cursor } } }", n="x")) == [
        "BAD_USER_INPUT"
    ]
    assert codes(await answer(gql, "{ sagasNeedingAttention(limit: 0) { id } }")) == ["BAD_USER_INPUT"]
    over_http = await answer(gql, "subscription { sagaFeed { sequence } }")
    assert codes(over_http) == ["BAD_REQUEST"]
    mine = [r for r in errors_logged.records if r.name.startswith("ordersaga")]
    assert mine and all(r.levelno < logging.ERROR and r.exc_info is None for r in mine)


async def test_a_null_variable_for_an_input_field_that_takes_no_null_is_bad_user_input(
    served: tuple[Service, GraphQLClient], errors_logged: pytest.LogCaptureFixture
) -> None:
    """A nullable variable may stand where a non-null input field with a default is (validation lets
    it through); null is refused only as the field runs, by graphql-core, and is the client's error."""
    _, gql = served
    placing = """mutation ($wait: Int) {
      placeOrder(input: {lines: [{sku: "SKU-1", quantity: 1}], awaitOutcomeMs: $wait}) { order { id } } }"""
    assert "invalid value" in refused(await answer(gql, placing, wait=None))
    updating = """mutation ($id: ID!, $rotate: Boolean) {
      updateWebhookEndpoint(input: {id: $id, rotateSecret: $rotate}) { endpoint { id } } }"""
    assert "invalid value" in refused(await answer(gql, updating, id="any", rotate=None))
    assert (await ask(gql, "{ orders { edges { cursor } } }"))["orders"]["edges"] == []
    mine = [r for r in errors_logged.records if r.name.startswith("ordersaga")]
    assert mine and all(r.levelno < logging.ERROR and r.exc_info is None for r in mine)


# ------------------------------------------------------------------------ the reported examples


async def test_a_time_that_cannot_be_moved_to_utc_is_bad_user_input(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    for at in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"):
        assert "cannot be moved to UTC" in refused(await answer(gql, ORDERS_AFTER, at=at))
        inline = f'{{ orders(placedAfter: "{at}") {{ edges {{ cursor }} }} }}'
        assert "cannot be moved to UTC" in refused(await answer(gql, inline))
    assert (await ask(gql, ORDERS_AFTER, at="9999-12-31T23:59:59+00:00"))["orders"]["edges"] == []


async def test_a_date_time_is_rfc_3339_or_bad_user_input(served: tuple[Service, GraphQLClient]) -> None:
    _, gql = served
    lenient = (
        "2026-01-01T00:00:00Z\u0000",
        f"2026-01-01T00:00:00.{'1' * 20}Z",
        "20260101T000000Z",
        "2026-01-01",
    )
    for at in ("yesterday", "2026-01-01T00:00:00", *lenient):
        assert "RFC 3339" in refused(await answer(gql, ORDERS_AFTER, at=at)), at
        inline = f"{{ orders(placedAfter: {json.dumps(at)}) {{ edges {{ cursor }} }} }}"
        body = await answer(gql, inline)
        assert "RFC 3339" in refused(body), at
        # Pointing at the value, as graphql-core's refusals of the values written in a document do.
        assert body["errors"][0]["locations"] == [{"line": 1, "column": 23}], at
    assert (await ask(gql, ORDERS_AFTER, at="2026-01-01t00:00:00.123456789z"))["orders"]["edges"] == []


async def test_a_leap_second_is_refused_as_one_rfc_3339_allows_but_the_service_does_not(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    for at in ("2016-12-31T23:59:60Z", "2017-01-01T00:59:60.5+01:00"):
        assert "leap second" in refused(await answer(gql, ORDERS_AFTER, at=at)), at
        inline = f"{{ orders(placedAfter: {json.dumps(at)}) {{ edges {{ cursor }} }} }}"
        assert "leap second" in refused(await answer(gql, inline)), at
    assert (await ask(gql, ORDERS_AFTER, at="2016-12-31T23:59:59.999999Z"))["orders"]["edges"] == []


async def test_text_that_cannot_be_stored_is_refused_in_query_arguments(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    for text in (NUL, LONE_SURROGATE):
        for query, variables in (
            ("query ($id: ID!) { saga(id: $id) { id } }", {"id": text}),
            ("query ($id: ID!) { node(id: $id) { id } }", {"id": text}),
            ("query ($sku: String!) { stockLevels(sku: $sku) { onHand } }", {"sku": text}),
            ("query ($c: String) { orders(customerId: $c) { edges { cursor } } }", {"c": text}),
            (SAGAS_AFTER, {"after": text}),
        ):
            assert "cannot be stored" in refused(await answer(gql, query, **variables)), query
    assert (await ask(gql, "query ($id: ID!) { saga(id: $id) { id } }", id="no-such-saga"))["saga"] is None


async def test_text_that_cannot_be_stored_is_a_user_error_in_mutation_inputs_and_changes_nothing(
    served: tuple[Service, GraphQLClient],
) -> None:
    svc, gql = served
    before = await ask(gql, PRODUCTS)
    for text in (NUL, LONE_SURROGATE):
        order = {"customerId": "c", "lines": [{"sku": "TEA", "quantity": 1}], "idempotencyKey": text}
        payload = (await ask(gql, PLACE, input=order))["placeOrder"]
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("INVALID_TEXT", "idempotencyKey")
        ]
        assert payload["order"] is None
        product = """mutation ($name: String!) {
          registerProduct(input: {sku: "NEW", name: $name, storageCondition: AMBIENT}) {
            product { sku } userErrors { code field } } }"""
        assert (await ask(gql, product, name=text))["registerProduct"] == {
            "product": None,
            "userErrors": [{"code": "INVALID_TEXT", "field": "name"}],
        }
        sections = """mutation ($code: String!) { registerWarehouse(input: {code: "W9", name: "Nine",
            sections: [{code: "A", storageCondition: AMBIENT}, {code: $code, storageCondition: AMBIENT}]}) {
            userErrors { code field } } }"""
        assert (await ask(gql, sections, code=text))["registerWarehouse"]["userErrors"] == [
            {"code": "INVALID_TEXT", "field": "sections[1].code"}
        ]
    assert await ask(gql, PRODUCTS) == before
    assert (await ask(gql, "{ orders { edges { cursor } } }"))["orders"]["edges"] == []


async def test_a_cursor_the_server_did_not_make_is_an_invalid_cursor(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    made = cursor_of("2026-01-01T00:00:00+00:00", str(uuid.uuid4()))
    assert (await ask(gql, SAGAS_AFTER, after=made))["sagas"]["edges"] == []
    for cursor in (
        "not-a-cursor",
        "",
        cursor_of("2026-01-01T00:00:00+00:00", 7),
        cursor_of("2026-01-01T00:00:00+00:00", "a\x00b"),
        cursor_of("2026-01-01T00:00:00+00:00", "x" * 5000),
        cursor_of("2026-01-01T00:00:00", str(uuid.uuid4())),
        cursor_of("9999-12-31T23:59:59-05:00", str(uuid.uuid4())),
        cursor_of("2026-01-01T00:00:00+00:00"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
        made.rstrip("=") + "!",
    ):
        body = await answer(gql, SAGAS_AFTER, after=cursor)
        assert "invalid cursor" in refused(body), cursor
        assert body["errors"][0]["extensions"]["argument"] == "after"


async def test_a_receipt_past_a_32_bit_count_is_refused_and_changes_nothing(
    served: tuple[Service, GraphQLClient],
) -> None:
    svc, gql = served
    receive = """mutation ($section: String!, $quantity: Int!) { receiveStock(input:
        {sku: "TEA", warehouseCode: "W1", sectionCode: $section, quantity: $quantity}) {
        stockLevel { onHand } userErrors { code field } } }"""
    section_b = """mutation { registerWarehouse(input: {code: "W2", name: "Two",
        sections: [{code: "B", storageCondition: AMBIENT}]}) { userErrors { code } } }"""
    await ask(gql, section_b)
    near = MAX_COUNT - 10

    async def fill(conn: Db) -> None:
        await conn.execute(update(stock_table).where(stock_table.c.sku == "TEA").values(on_hand=near))

    await svc.write(fill)
    full = await ask(gql, PRODUCTS)
    assert full["products"] == [{"sku": "TEA", "onHand": near}]
    assert (await ask(gql, receive, section="A", quantity=10))["receiveStock"]["userErrors"] == []
    full = await ask(gql, PRODUCTS)
    assert full["products"] == [{"sku": "TEA", "onHand": MAX_COUNT}]
    million = 1_000_000
    over = await ask(gql, receive, section="A", quantity=million)
    assert over["receiveStock"] == {
        "stockLevel": None,
        "userErrors": [{"code": "OUT_OF_RANGE", "field": "quantity"}],
    }
    # Another section would hold little, but the product's total would pass the bound.
    receive_b = receive.replace('warehouseCode: "W1"', 'warehouseCode: "W2"')
    over_total = await ask(gql, receive_b, section="B", quantity=million)
    assert over_total["receiveStock"]["userErrors"] == [{"code": "OUT_OF_RANGE", "field": "quantity"}]
    assert await ask(gql, PRODUCTS) == full
    assert (await ask(gql, "{ warehouses { code sections { stock { onHand } } } }"))["warehouses"]


async def test_retry_and_abort_of_a_malformed_or_unknown_id_change_nothing_and_start_nothing(
    served: tuple[Service, GraphQLClient],
) -> None:
    svc, gql = served
    retry = (
        "mutation ($id: ID!) { retrySaga(input: {sagaId: $id}) { saga { id } userErrors { code field } } }"
    )
    abort = """mutation ($id: ID!, $reason: String!) { abortSaga(input: {sagaId: $id, reason: $reason}) {
        saga { id } userErrors { code field } } }"""
    for saga_id in (NUL, LONE_SURROGATE, "x" * 5000, str(uuid.uuid4())):
        code = "UNKNOWN_SAGA" if saga_id.isprintable() else "INVALID_TEXT"
        assert (await ask(gql, retry, id=saga_id))["retrySaga"]["userErrors"][0]["code"] == code
        assert (await ask(gql, abort, id=saga_id, reason="r"))["abortSaga"]["userErrors"][0]["code"] == code
    assert svc.orchestrator.running == 0
    assert (await ask(gql, "{ sagas { edges { cursor } } }"))["sagas"]["edges"] == []


async def test_an_abort_reason_that_cannot_be_stored_is_refused_and_the_saga_goes_on(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    placed = await place(gql, 1)
    saga_id = placed["saga"]["id"]
    abort = """mutation ($id: ID!, $reason: String!) { abortSaga(input: {sagaId: $id, reason: $reason}) {
        saga { id } userErrors { code field } } }"""
    payload = (await ask(gql, abort, id=saga_id, reason=NUL))["abortSaga"]
    assert payload == {"saga": None, "userErrors": [{"code": "INVALID_TEXT", "field": "reason"}]}
    saga = await gql.wait_for_saga(saga_id, "COMPLETED")
    assert "SagaAborted" not in [e["type"] for e in saga["events"]]


@pytest.fixture
def new_york() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def test_a_time_s_offset_is_what_counts_whatever_the_servers_time_zone(
    served: tuple[Service, GraphQLClient], new_york: None
) -> None:
    _, gql = served
    placed = await place(gql, 1)
    now = datetime.now(UTC)
    found = await ask(gql, ORDERS_AFTER, at=(now - timedelta(minutes=1)).isoformat())
    assert [e["node"]["id"] for e in found["orders"]["edges"]] == [placed["order"]["id"]]
    later = (now + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-5)))
    assert (await ask(gql, ORDERS_AFTER, at=later.isoformat()))["orders"]["edges"] == []
    # Without an offset the time would be the server's guess, so it is refused.
    assert "RFC 3339" in refused(await answer(gql, ORDERS_AFTER, at=now.replace(tzinfo=None).isoformat()))


async def test_text_that_cannot_be_stored_is_refused_in_subscription_arguments(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    async with subscriptions(str(gql.http.base_url)) as ws:
        for n, text in enumerate((NUL, LONE_SURROGATE)):
            await ws.subscribe(
                str(n), "subscription ($id: ID!) { sagaUpdates(sagaId: $id) { sequence } }", id=text
            )
            payload = await ws.next(str(n))
            assert payload is not None
            assert [e["extensions"]["code"] for e in payload["errors"]] == ["BAD_USER_INPUT"], payload


def test_every_mutation_can_answer_refused_text_as_a_user_error() -> None:
    """Refused text (`storable_arguments`) answers a mutation with its payload holding userErrors
    alone: every payload must take that, so a new mutation cannot escape the check."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    for name, field in mutation.fields.items():
        payload = get_nullable_type(field.type)
        assert isinstance(payload, GraphQLObjectType) and "userErrors" in payload.fields, name
        payload.extensions["strawberry-definition"].origin(user_errors=[])


async def test_an_idempotency_key_replays_only_the_same_request(
    served: tuple[Service, GraphQLClient],
) -> None:
    _, gql = served
    await ask(
        gql,
        """mutation { registerProduct(input: {sku: "MUG", name: "Mug", storageCondition: AMBIENT}) {
        userErrors { code } } }""",
    )
    alice = {"customerId": "alice", "lines": [{"sku": "MUG", "quantity": 1}, {"sku": "TEA", "quantity": 1}]}
    impostor = {"customerId": "alice|MUGx1", "lines": [{"sku": "TEA", "quantity": 1}]}
    first = (await ask(gql, PLACE, input={**alice, "idempotencyKey": "k"}))["placeOrder"]
    again = await ask(gql, PLACE, input={**alice, "lines": alice["lines"][::-1], "idempotencyKey": "k"})
    assert again["placeOrder"]["order"]["id"] == first["order"]["id"]
    other = (await ask(gql, PLACE, input={**impostor, "idempotencyKey": "k"}))["placeOrder"]
    assert other["order"] is None
    assert [e["code"] for e in other["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
