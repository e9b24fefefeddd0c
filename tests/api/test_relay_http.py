"""Relay reading over real HTTP on each database: node(id), keyset-paged connections with filters,
and nested fields loaded in batches (a constant number of statements per page)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.graphql.node_ids import catalog_id
from tests.api.live import reads_sent
from tests.api.server import TLS, GraphQLClient, serve
from tests.integration.staging import Stage, make_stage
from tests.service.fakes import START

SAGA_PAGE = """
query ($first: Int, $after: String, $status: [SagaStatus!], $customerId: String,
       $startedAfter: DateTime, $startedBefore: DateTime) {
  sagas(first: $first, after: $after, status: $status, customerId: $customerId,
        startedAfter: $startedAfter, startedBefore: $startedBefore) {
    edges { cursor node { id status } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""
ORDER_PAGE = """
query ($first: Int, $after: String, $status: [OrderStatus!], $customerId: String,
       $placedAfter: DateTime, $placedBefore: DateTime) {
  orders(first: $first, after: $after, status: $status, customerId: $customerId,
         placedAfter: $placedAfter, placedBefore: $placedBefore) {
    edges { node { id status customerId } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[tuple[Stage, GraphQLClient]]:
    stage = make_stage(database_url)
    async with (
        serve(stage.svc) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        await stage.stock(quantity=1000)
        yield stage, GraphQLClient(http)


async def errors(gql: GraphQLClient, query: str, **variables: Any) -> list[str]:
    response = await gql.http.post("/graphql", json={"query": query, "variables": variables})
    return [e["message"] for e in response.json().get("errors", [])]


def ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_saga_pages_run_newest_first_and_stay_put_as_new_sagas_arrive(
    served: tuple[Stage, GraphQLClient],
) -> None:
    stage, gql = served
    placed = []
    for n in range(7):
        placed.append(await stage.place(1))
        if n % 3 == 2:  # some sagas share their start time, so the id breaks ties
            await stage.clock.advance(1)
    rows = [row for saga_id in placed if (row := await stage.svc.read.saga(saga_id)) is not None]
    assert len(rows) == len(placed)
    newest_first = [r.id for r in sorted(rows, key=lambda r: (r.started_at, r.id), reverse=True)]

    first = (await gql(SAGA_PAGE, first=3))["sagas"]
    await stage.clock.advance(1)
    arrived = [await stage.place(1), await stage.place(1)]
    second = (await gql(SAGA_PAGE, first=3, after=first["pageInfo"]["endCursor"]))["sagas"]
    third = (await gql(SAGA_PAGE, first=3, after=second["pageInfo"]["endCursor"]))["sagas"]

    assert ids(first) + ids(second) + ids(third) == newest_first
    assert [p["pageInfo"]["hasNextPage"] for p in (first, second, third)] == [True, True, False]
    assert [p["pageInfo"]["hasPreviousPage"] for p in (first, second, third)] == [False, True, True]
    assert third["pageInfo"]["endCursor"] == third["edges"][-1]["cursor"]
    assert second["pageInfo"]["startCursor"] == second["edges"][0]["cursor"]
    assert ids((await gql(SAGA_PAGE, first=2))["sagas"]) == sorted(arrived, reverse=True)
    empty = (await gql(SAGA_PAGE, first=0))["sagas"]
    assert empty == {
        "edges": [],
        "pageInfo": {"hasNextPage": True, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


async def test_connections_filter_by_status_customer_and_time(served: tuple[Stage, GraphQLClient]) -> None:
    stage, gql = served
    early = await stage.order(1, customer="alice")
    await stage.clock.advance(60)
    failed = await stage.order(5000, customer="alice")
    await stage.clock.advance(60)
    late = await stage.order(2, customer="bob")
    order_of = {s: (await stage.svc.read.saga(s)).order_id for s in (early, failed, late)}  # type: ignore[union-attr]
    minute = START + timedelta(seconds=60)

    async def sagas(**filters: Any) -> list[str]:
        return ids((await gql(SAGA_PAGE, **filters))["sagas"])

    async def orders(**filters: Any) -> list[str]:
        return ids((await gql(ORDER_PAGE, **filters))["orders"])

    assert await sagas(status=["FAILED"]) == [failed]
    assert await sagas(status=["FAILED", "COMPLETED"]) == [late, failed, early]
    assert await sagas(customerId="alice") == [failed, early]
    assert await sagas(startedAfter=minute.isoformat()) == [late, failed]
    assert await sagas(startedBefore=minute.isoformat()) == [early]
    assert await sagas(customerId="alice", startedAfter=minute.isoformat(), status=["COMPLETED"]) == []

    assert await orders(status=["CANCELLED"]) == [order_of[failed]]
    assert await orders(status=["CONFIRMED"], customerId="bob") == [order_of[late]]
    assert await orders(placedAfter=minute.isoformat(), placedBefore=(minute + timedelta(1)).isoformat()) == [
        order_of[late],
        order_of[failed],
    ]
    # The filters' time is the order's placedAt (createdAt, deprecated, is the same).
    placed = await gql("query ($id: ID!) { order(id: $id) { placedAt createdAt } }", id=order_of[failed])
    assert placed["order"] == {"placedAt": minute.isoformat(), "createdAt": minute.isoformat()}
    two = (await gql(ORDER_PAGE, first=2))["orders"]
    rest = (await gql(ORDER_PAGE, first=2, after=two["pageInfo"]["endCursor"]))["orders"]
    assert ids(two) + ids(rest) == [order_of[late], order_of[failed], order_of[early]]
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": rest["pageInfo"]["startCursor"],
        "endCursor": rest["pageInfo"]["endCursor"],
    }


async def test_page_sizes_are_capped_and_cursors_checked(served: tuple[Stage, GraphQLClient]) -> None:
    _, gql = served
    assert await errors(gql, SAGA_PAGE, first=101) == ["first must be between 0 and 100, got 101"]
    assert await errors(gql, ORDER_PAGE, first=-1) == ["first must be between 0 and 100, got -1"]
    assert await errors(gql, SAGA_PAGE, after="not-a-cursor") == [
        "invalid cursor: pass a startCursor or endCursor this API returned"
    ]
    assert (await gql(SAGA_PAGE, first=100))["sagas"]["edges"] == []


async def test_node_finds_a_saga_or_an_order_by_id(served: tuple[Stage, GraphQLClient]) -> None:
    stage, gql = served
    saga_id = await stage.order(1)
    row = await stage.svc.read.saga(saga_id)
    assert row is not None
    query = """query ($id: ID!) {
      node(id: $id) { __typename id ... on Saga { status } ... on Order { customerId } }
    }"""
    assert (await gql(query, id=saga_id))["node"] == {
        "__typename": "Saga",
        "id": saga_id,
        "status": "COMPLETED",
    }
    assert (await gql(query, id=row.order_id))["node"] == {
        "__typename": "Order",
        "id": row.order_id,
        "customerId": "c-1",
    }
    assert (await gql(query, id="00000000-0000-0000-0000-000000000000"))["node"] is None


NODE = """query ($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Shipment { picks { sku quantity } }
    ... on Product { sku onHand }
    ... on Warehouse { code sections { id code } }
    ... on Section { code stock { id sku } }
    ... on StockLevel { warehouseCode sectionCode sku available }
  }
}"""
IDENTIFIED = """{
  saga: sagas(first: 1) { edges { node { id order { id shipment { id } } } } }
  products { id sku }
  warehouses { id code sections { id code } }
}"""


async def test_every_object_with_an_identity_is_a_node_that_node_finds(
    served: tuple[Stage, GraphQLClient],
) -> None:
    stage, gql = served
    await stage.order(2)
    listed = await gql(IDENTIFIED)
    [saga] = [edge["node"] for edge in listed["saga"]["edges"]]
    [product], [warehouse] = listed["products"], listed["warehouses"]
    [section] = warehouse["sections"]
    shipment = saga["order"]["shipment"]

    ids = [saga["id"], saga["order"]["id"], shipment["id"], product["id"], warehouse["id"], section["id"]]
    found = {node["__typename"]: node for node in [(await gql(NODE, id=id))["node"] for id in ids]}
    [level] = found["Section"]["stock"]
    ids.append(level["id"])
    found["StockLevel"] = (await gql(NODE, id=level["id"]))["node"]
    assert len(set(ids)) == len(ids)
    kinds = ["Saga", "Order", "Shipment", "Product", "Warehouse", "Section", "StockLevel"]
    assert [found[kind]["id"] for kind in kinds] == ids
    assert found["Shipment"]["picks"] == [{"sku": "SKU-1", "quantity": 2}]
    assert (found["Product"]["sku"], found["Product"]["onHand"]) == ("SKU-1", 1000)
    assert found["Warehouse"]["sections"] == [section]
    assert found["Section"]["code"] == "A"
    assert found["StockLevel"] == {
        "__typename": "StockLevel",
        "id": level["id"],
        "warehouseCode": "W1",
        "sectionCode": "A",
        "sku": "SKU-1",
        "available": 998,
    }


async def test_a_product_and_a_warehouse_with_the_same_code_have_different_ids(
    served: tuple[Stage, GraphQLClient],
) -> None:
    _, gql = served
    await gql(
        """mutation {
          registerWarehouse(input: {code: "TEA", name: "Tea house", sections: []}) { warehouse { id } }
          registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) { product { id } }
        }"""
    )
    listed = await gql("{ products { id sku } warehouses { id code } }")
    product = next(p for p in listed["products"] if p["sku"] == "TEA")
    warehouse = next(w for w in listed["warehouses"] if w["code"] == "TEA")
    assert product["id"] != warehouse["id"]
    assert (await gql(NODE, id=product["id"]))["node"]["__typename"] == "Product"
    assert (await gql(NODE, id=warehouse["id"]))["node"]["__typename"] == "Warehouse"


@pytest.mark.parametrize(
    "id",
    [
        catalog_id("Product", "NO-SUCH-SKU"),
        catalog_id("Warehouse", "NOWHERE"),
        catalog_id("Section", "W1", "Z"),
        catalog_id("Section", "W1"),  # a key of the wrong length
        catalog_id("StockLevel", "W1", "A", "NO-SUCH-SKU"),
        catalog_id("StockLevel", "W1", "Z", "SKU-1"),
        catalog_id("Planet", "Mars"),
        "not an id",
        "WyJQcm9kdWN0IiwxXQ",  # ["Product", 1]
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),  # JSON past the decoder's depth
    ],
)
async def test_an_id_that_names_nothing_finds_null(served: tuple[Stage, GraphQLClient], id: str) -> None:
    _, gql = served
    assert (await gql(NODE, id=id))["node"] is None


@pytest.mark.parametrize(
    "id",
    [
        "WyJQcm9kdWN0IiwiXHVkODAwIl0=",  # ["Product","\ud800"]: a lone surrogate
        "WyJQcm9kdWN0IiwgIkFcdTAwMDAiXQ",  # ["Product", "A\u0000"]
        catalog_id("Section", "W1", "A\x00"),
        catalog_id("Warehouse\x00", "W1"),
    ],
)
async def test_an_id_holding_text_that_cannot_be_stored_is_refused_like_that_text(
    served: tuple[Stage, GraphQLClient], id: str
) -> None:
    _, gql = served
    response = await gql.http.post("/graphql", json={"query": NODE, "variables": {"id": id}})
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}
    assert "cannot be stored" in error["message"]


async def test_an_id_holding_text_longer_than_any_code_finds_null(
    served: tuple[Stage, GraphQLClient],
) -> None:
    _, gql = served
    for id in (
        catalog_id("Product", "X" * 100_000),
        catalog_id("StockLevel", "W1", "A", "\U0001f375" * 50_000),
    ):
        assert (await gql(NODE, id=id))["node"] is None


async def test_a_page_with_nested_fields_takes_the_same_few_statements_whatever_its_size(
    served: tuple[Stage, GraphQLClient],
) -> None:
    stage, gql = served
    for _ in range(20):
        await stage.order(1)
    query = """query ($first: Int) { sagas(first: $first) { edges { node {
        id events { type } compensations { name }
        order { id status shipment { id createdAt } saga { id status } } } } } }"""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The webhook relays look for endpoints, and the warehouse client for service URLs, now and
        # then on the same engine: not this query's.
        background = ("webhook_endpoints", "service_url")
        if statement.lstrip().upper().startswith("SELECT") and not any(b in statement for b in background):
            statements.append(statement)

    counts = []
    with reads_sent(stage.svc, record):
        for first in (2, 20):
            statements.clear()
            page = (await gql(query, first=first))["sagas"]["edges"]
            assert len(page) == first
            assert all(e["node"]["order"]["shipment"] and len(e["node"]["events"]) == 7 for e in page)
            assert all(e["node"]["order"]["saga"]["id"] == e["node"]["id"] for e in page)
            counts.append(len(statements))
    # The page, then one query each for orders, shipments and timelines.
    assert counts == [4, 4]
