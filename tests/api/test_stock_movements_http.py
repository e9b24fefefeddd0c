"""Correcting a section by a cycle count and explaining its on-hand from its movements, over real
HTTP on each database; refused adjustments say why with a code and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.server import GraphQLClient, place

ADJUST = """
mutation ($delta: Int!, $reason: String!) {
  adjustStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantityDelta: $delta,
                      reason: $reason}) {
    stockLevel { onHand reserved available }
    userErrors { code field }
  }
}
"""
MOVEMENTS = """
query ($first: Int!, $after: String) {
  stockMovements(sku: "TEA", first: $first, after: $after) {
    edges { node { kind warehouseCode sectionCode onHandChange reservedChange reference } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
STOCK = '{ stockLevels(sku: "TEA") { onHand reserved available } }'


async def _every_movement(gql: GraphQLClient) -> list[dict[str, Any]]:
    """All of TEA's movements, newest first, two a page."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await gql(MOVEMENTS, first=2, after=after))["stockMovements"]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_a_cycle_count_corrects_the_section_and_the_movements_explain_it(gql: GraphQLClient) -> None:
    placed = await place(gql, 2)
    await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")

    counted = (await gql(ADJUST, delta=-1, reason="cycle count: one missing"))["adjustStock"]
    assert counted == {"stockLevel": {"onHand": 4, "reserved": 2, "available": 2}, "userErrors": []}
    found = (await gql(ADJUST, delta=3, reason="cycle count: a case behind the shelf"))["adjustStock"]
    assert found["stockLevel"] == {"onHand": 7, "reserved": 2, "available": 5}

    movements = await _every_movement(gql)
    assert [(m["kind"], m["onHandChange"], m["reservedChange"], m["reference"]) for m in movements] == [
        ("ADJUSTMENT", 3, 0, "cycle count: a case behind the shelf"),
        ("ADJUSTMENT", -1, 0, "cycle count: one missing"),
        ("RESERVATION", 0, 2, placed["order"]["id"]),
        ("RECEIPT", 5, 0, None),
    ]
    assert sum(m["onHandChange"] for m in movements) == 7
    assert sum(m["reservedChange"] for m in movements) == 2


@pytest.mark.parametrize(
    ("delta", "reason", "errors"),
    [
        (-4, "damaged", [{"code": "BELOW_RESERVED", "field": "quantityDelta"}]),
        (2_147_483_647, "found", [{"code": "OUT_OF_RANGE", "field": "quantityDelta"}]),
        (-2_147_483_648, "lost", [{"code": "OUT_OF_RANGE", "field": "quantityDelta"}]),
        (0, "nothing", [{"code": "INVALID_QUANTITY", "field": "quantityDelta"}]),
        (1, " ", [{"code": "REQUIRED", "field": "reason"}]),
    ],
)
async def test_a_refused_adjustment_says_why_and_changes_nothing(
    gql: GraphQLClient, delta: int, reason: str, errors: list[dict[str, str]]
) -> None:
    placed = await place(gql, 2)  # 5 on hand, 2 of them reserved
    await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")

    refused = (await gql(ADJUST, delta=delta, reason=reason))["adjustStock"]

    assert refused == {"stockLevel": None, "userErrors": errors}
    assert (await gql(STOCK))["stockLevels"] == [{"onHand": 5, "reserved": 2, "available": 3}]
    assert [m["kind"] for m in await _every_movement(gql)] == ["RESERVATION", "RECEIPT"]
