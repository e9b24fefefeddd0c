"""The conventions of GitHub's and Shopify's GraphQL APIs over real HTTP, on SQLite and PostgreSQL:
`nodes(ids:)` with `node`'s visibility, `nodes` and `totalCount` on connections, and backward paging
(`last`/`before`) that walks the rows forward paging walks, in reverse, while new rows arrive."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.graphql.node_ids import catalog_id
from tests.api.server import TLS, serve
from tests.api.tokens import AUTH, CUSTOMER_A, CUSTOMER_B, OPERATOR, Caller
from tests.integration.staging import Stage, make_stage
from tests.service.fakes import START


@dataclass
class Shop:
    stage: Stage
    operator: Caller
    a: Caller  # customer-a
    b: Caller  # customer-b


@pytest.fixture
async def shop(database_url: str) -> AsyncIterator[Shop]:
    stage = make_stage(database_url, auth=AUTH)
    async with serve(stage.svc) as url, httpx.AsyncClient(base_url=url, timeout=10, verify=TLS) as http:
        await stage.stock(quantity=1000)
        yield Shop(stage, Caller(http, OPERATOR), Caller(http, CUSTOMER_A), Caller(http, CUSTOMER_B))


def refusal(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """The one error of an answer: its code, message and the argument it names."""
    (error,) = body["errors"]
    return error["extensions"]["code"], error["message"], error["extensions"].get("argument")


NODES = "query ($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
NODE = "query ($id: ID!) { node(id: $id) { __typename id } }"


async def test_nodes_finds_each_id_as_node_does_in_the_order_asked(shop: Shop) -> None:
    mine = await shop.stage.order(1, customer="customer-a")
    theirs = await shop.stage.order(1, customer="customer-b")
    my_order, their_order = [(await shop.stage.svc.read.saga(s)).order_id for s in (mine, theirs)]  # type: ignore[union-attr]
    catalog = await shop.operator.data("{ products { id } warehouses { id sections { id } } }")
    [product], [warehouse] = catalog["products"], catalog["warehouses"]
    ids = [
        mine,
        their_order,
        product["id"],
        warehouse["id"],
        warehouse["sections"][0]["id"],
        str(uuid.uuid4()),
        catalog_id("Product", "NO-SUCH-SKU"),
        "not an id",
        my_order,
        theirs,
        mine,  # asked twice, found twice
    ]

    def kinds(nodes: list[dict[str, Any] | None]) -> list[str | None]:
        return [node and node["__typename"] for node in nodes]

    seen_by_staff = (await shop.operator.data(NODES, ids=ids))["nodes"]
    assert kinds(seen_by_staff) == [
        "Saga", "Order", "Product", "Warehouse", "Section", None, None, None, "Order", "Saga", "Saga",
    ]  # fmt: skip
    assert [node and node["id"] for node in seen_by_staff] == [
        id if kind else None for id, kind in zip(ids, kinds(seen_by_staff), strict=True)
    ]
    # A customer sees its own and the products; another's order and saga, and the warehouse, are null.
    seen_by_a = (await shop.a.data(NODES, ids=ids))["nodes"]
    assert kinds(seen_by_a) == ["Saga", None, "Product", None, None, None, None, None, "Order", None, "Saga"]
    for caller, seen in ((shop.a, seen_by_a), (shop.operator, seen_by_staff)):
        assert seen == [(await caller.data(NODE, id=id))["node"] for id in ids]
    assert (await shop.a.data(NODES, ids=[]))["nodes"] == []


async def test_nodes_refuses_more_ids_than_it_may_look_up_and_ids_holding_unstorable_text(
    shop: Shop,
) -> None:
    mine = await shop.stage.order(1, customer="customer-a")
    # Catalog ids are looked up one by one, unlike the batched UUIDs: half of them, at the cap.
    hundred = (
        [mine]
        + [str(uuid.uuid4()) for _ in range(49)]
        + [catalog_id("Product", f"NO-{n}") for n in range(50)]
    )
    found = (await shop.a.data(NODES, ids=hundred))["nodes"]
    assert len(found) == 100 and found[0] == {"__typename": "Saga", "id": mine}
    too_many = await shop.a(NODES, ids=[*hundred, mine])
    assert too_many["data"] is None
    assert refusal(too_many) == ("BAD_USER_INPUT", "ids may hold at most 100 ids, got 101", "ids")
    unstorable = await shop.a(NODES, ids=[mine, catalog_id("Product", "A\x00")])
    code, message, argument = refusal(unstorable)
    assert (code, argument) == ("BAD_USER_INPUT", "ids") and "cannot be stored" in message


COUNTS = """
query ($status: [SagaStatus!], $orderStatus: [OrderStatus!], $customerId: String, $after: DateTime,
       $first: Int, $cursor: String) {
  sagas(status: $status, customerId: $customerId, startedAfter: $after, first: $first, after: $cursor) {
    totalCount edges { cursor node { id } } nodes { id }
  }
  orders(status: $orderStatus, customerId: $customerId, placedAfter: $after, first: $first) {
    totalCount nodes { customerId }
  }
}
"""


async def test_total_count_counts_the_whole_filtered_list_and_a_customer_only_its_own(shop: Shop) -> None:
    stage = shop.stage
    await stage.order(1, customer="customer-a")
    await stage.clock.advance(60)
    await stage.order(5000, customer="customer-a")  # more than there is: FAILED, its order CANCELLED
    await stage.order(1, customer="customer-b")
    await stage.order(1, customer="customer-a")
    minute = (START + timedelta(seconds=60)).isoformat()

    async def counts(caller: Caller, **filters: Any) -> tuple[int, int]:
        found = await caller.data(COUNTS, **filters)
        return found["sagas"]["totalCount"], found["orders"]["totalCount"]

    assert await counts(shop.operator) == (4, 4)
    assert await counts(shop.operator, status=["FAILED"], orderStatus=["CANCELLED"]) == (1, 1)
    assert await counts(shop.operator, customerId="customer-a") == (3, 3)
    assert await counts(shop.operator, customerId="customer-a", after=minute) == (2, 2)
    assert await counts(
        shop.operator, status=["COMPLETED"], orderStatus=["CANCELLED"], customerId="customer-b"
    ) == (
        1,
        0,
    )
    # The count is the list's, whatever the page: its size and its cursor.
    page = (await shop.operator.data(COUNTS, first=1))["sagas"]
    assert (page["totalCount"], len(page["edges"])) == (4, 1)
    assert page["nodes"] == [edge["node"] for edge in page["edges"]]
    after = await shop.operator.data(COUNTS, first=1, cursor=page["edges"][0]["cursor"])
    assert after["sagas"]["totalCount"] == 4

    assert await counts(shop.a) == (3, 3)
    assert await counts(shop.a, status=["FAILED"]) == (1, 3)
    assert await counts(shop.a, customerId="customer-b") == (0, 0)
    assert await counts(shop.b) == (1, 1)
    mine = await shop.a.data(COUNTS)
    assert [node["customerId"] for node in mine["orders"]["nodes"]] == ["customer-a"] * 3

    movements = """query ($warehouse: String) { stockMovements(sku: "SKU-1", warehouseCode: $warehouse,
      first: 100) { totalCount nodes { kind } } }"""
    listed = (await shop.operator.data(movements))["stockMovements"]
    assert listed["totalCount"] == len(listed["nodes"]) == 4  # the receipt, then 3 reservations
    assert (await shop.operator.data(movements, warehouse="NOWHERE"))["stockMovements"]["totalCount"] == 0


SAGAS = """
query ($first: Int, $after: String, $last: Int, $before: String) {
  sagas(first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_backward_pages_walk_the_forward_rows_in_reverse_while_new_rows_arrive(shop: Shop) -> None:
    stage, staff = shop.stage, shop.operator
    for n in range(7):
        await stage.place(1)
        if n % 3 == 2:  # some sagas share their start time, so the id breaks ties
            await stage.clock.advance(1)
    forward, cursor = [], None
    while True:
        page = (await staff.data(SAGAS, first=3, after=cursor))["sagas"]
        forward += ids(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        cursor = page["pageInfo"]["endCursor"]
    assert len(forward) == 7

    oldest = (await staff.data(SAGAS, last=3))["sagas"]
    await stage.clock.advance(1)
    arrived = sorted([await stage.place(1), await stage.place(1)], reverse=True)
    middle = (await staff.data(SAGAS, last=3, before=oldest["pageInfo"]["startCursor"]))["sagas"]
    newest = (await staff.data(SAGAS, last=3, before=middle["pageInfo"]["startCursor"]))["sagas"]

    assert (ids(oldest), ids(middle), ids(newest)) == (forward[4:], forward[1:4], [*arrived, forward[0]])
    assert [p["pageInfo"]["hasPreviousPage"] for p in (oldest, middle, newest)] == [True, True, False]
    assert [p["pageInfo"]["hasNextPage"] for p in (oldest, middle, newest)] == [False, True, True]
    assert middle["pageInfo"]["startCursor"] == middle["edges"][0]["cursor"]
    assert middle["pageInfo"]["endCursor"] == middle["edges"][-1]["cursor"]
    # Both bounds at once: the rows between two cursors.
    between = (
        await staff.data(
            SAGAS, last=9, after=newest["edges"][-1]["cursor"], before=oldest["edges"][0]["cursor"]
        )
    )["sagas"]
    assert ids(between) == forward[1:4]
    assert between["pageInfo"]["hasPreviousPage"] is False and between["pageInfo"]["hasNextPage"] is True
    empty = (await staff.data(SAGAS, last=0))["sagas"]
    assert empty == {
        "edges": [],
        "pageInfo": {"hasNextPage": False, "hasPreviousPage": True, "startCursor": None, "endCursor": None},
    }


ORDERS = """query ($first: Int, $last: Int, $before: String) {
  orders(first: $first, last: $last, before: $before) {
    nodes { id } pageInfo { startCursor hasPreviousPage }
  }
}"""
MOVEMENTS = """query ($first: Int, $last: Int, $before: String) {
  stockMovements(sku: "SKU-1", first: $first, last: $last, before: $before) {
    nodes { id } pageInfo { startCursor hasPreviousPage }
  }
}"""
JOURNAL = """query ($first: Int, $last: Int, $before: String) {
  journalEvents(first: $first, last: $last, before: $before) {
    nodes { cursor saga { id } } pageInfo { startCursor hasPreviousPage }
  }
}"""


async def backward(caller: Caller, query: str, field: str, size: int) -> list[Any]:
    """Every node of a connection, read in pages of `size` from its end to its start."""
    nodes: list[Any] = []
    before = None
    while True:
        page = (await caller.data(query, last=size, before=before))[field]
        nodes = page["nodes"] + nodes
        if not page["pageInfo"]["hasPreviousPage"]:
            return nodes
        before = page["pageInfo"]["startCursor"]


@pytest.mark.parametrize(
    ("query", "field"), [(ORDERS, "orders"), (MOVEMENTS, "stockMovements"), (JOURNAL, "journalEvents")]
)
async def test_every_connection_pages_backward_over_what_it_pages_forward(
    shop: Shop, query: str, field: str
) -> None:
    for n in range(5):
        await shop.stage.order(1, customer="customer-a" if n % 2 else "customer-b")
    everything = (await shop.operator.data(query, first=100))[field]["nodes"]
    assert len(everything) >= 5
    assert await backward(shop.operator, query, field, 3) == everything
    if field != "stockMovements":  # a customer's list is its own part of it
        own = (await shop.a.data(query, first=100))[field]["nodes"]
        assert 0 < len(own) < len(everything)
        assert await backward(shop.a, query, field, 2) == own


@pytest.mark.parametrize(
    ("query", "field"),
    [(SAGAS, "sagas"), (ORDERS, "orders"), (MOVEMENTS, "stockMovements"), (JOURNAL, "journalEvents")],
)
async def test_first_with_last_sizes_out_of_range_and_foreign_cursors_are_refused(
    shop: Shop, query: str, field: str
) -> None:
    await shop.stage.order(1, customer="customer-a")
    for variables, (message, argument) in [
        ({"first": 2, "last": 2}, ("pass first or last, not both", "last")),
        ({"first": 0, "last": 0}, ("pass first or last, not both", "last")),
        ({"last": 101}, ("last must be between 0 and 100, got 101", "last")),
        ({"last": -1}, ("last must be between 0 and 100, got -1", "last")),
    ]:
        assert refusal(await shop.operator(query, **variables)) == ("BAD_USER_INPUT", message, argument)
    # A cursor of another list, or none at all, is refused for `before` as for `after`.
    sagas = (await shop.operator.data(SAGAS, first=1))["sagas"]
    journal = (await shop.operator.data(JOURNAL, first=1))["journalEvents"]
    foreign = (
        journal["pageInfo"]["startCursor"] if field != "journalEvents" else sagas["pageInfo"]["startCursor"]
    )
    for cursor in ("not-a-cursor", foreign):
        code, message, _ = refusal(await shop.operator(query, last=1, before=cursor))
        assert code == "BAD_USER_INPUT" and ("invalid cursor" in message or "unknown cursor" in message)


async def test_a_customer_may_not_page_the_journal_before_anothers_event(shop: Shop) -> None:
    await shop.stage.order(1, customer="customer-b")
    theirs = (await shop.b.data(JOURNAL, first=1))["journalEvents"]["pageInfo"]["startCursor"]
    assert refusal(await shop.a(JOURNAL, last=1, before=theirs)) == (
        "BAD_USER_INPUT",
        "unknown cursor: pass the cursor of an event this API sent you",
        "before",
    )
