"""What a release is given to write before it is upgraded: a catalog, orders placed with idempotency
keys by several customers (completed, failed for want of stock, dispatched, cancelled), and orders
left mid-saga, all through the GraphQL API that every release since 0.1.0 serves.

A release with authentication is called with tokens: customers place most orders in their own
name, an operator places some on a customer's behalf, and one customer uses a key another customer
used too. A release without it is called anonymously, as its clients called it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.tokens import Caller, bearer

CUSTOMERS = ("customer-1", "customer-2", "customer-3", "customer-4")
RECEIVED = {"SKU-1": 40, "SKU-2": 40, "SKU-3": 40}
OPERATOR = {"subject": "operator-1", "roles": ["operator"]}
COMPLETED, SHORT, UNFINISHED = 12, 3, 4
DISPATCHED, CANCELLED = range(0, 3), range(3, 6)  # of the completed orders
# An order that waits this long at its shipment, with a shipment timeout longer still, is mid-saga
# when its release is killed; the release that takes the database over must finish it.
SHIPMENT_DELAY_MS = 600_000
SHIPMENT_TIMEOUT_S = 3600

CATALOG = """
mutation ($sku: String!, $quantity: Int!) {
  registerProduct(input: {sku: $sku, name: $sku, storageCondition: AMBIENT}) { userErrors { code } }
  receiveStock(input: {sku: $sku, warehouseCode: "W1", sectionCode: "A", quantity: $quantity}) {
    userErrors { code }
  }
}
"""
WAREHOUSE = """
mutation {
  registerWarehouse(input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]}) {
    userErrors { code }
  }
}
"""
PLACE = """
mutation ($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    order { id shipment { id } }
    saga { id status }
    userErrors { code message }
  }
}
"""
SAGA = "query ($id: ID!) { saga(id: $id) { status } }"
DISPATCH = "mutation ($id: ID!) { dispatchShipment(input: {shipmentId: $id}) { userErrors { code } } }"
CANCEL = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { userErrors { code } } }"
DELAY_SHIPMENTS = f"""
mutation {{
  setParticipantFault(input: {{participant: SHIPMENT, delayMs: {SHIPMENT_DELAY_MS}}}) {{ __typename }}
}}
"""


@dataclass
class Callers:
    """Who the load speaks as: tokens when the release authenticates, nobody when it does not."""

    http: httpx.AsyncClient
    authenticated: bool

    def staff(self) -> Caller:
        return Caller(self.http, bearer("admin-1", "admin") if self.authenticated else {})

    def caller(self, who: dict[str, Any] | None) -> Caller:
        return Caller(self.http, bearer(who["subject"], *who["roles"]) if who else {})

    def placer(self, n: int, customer: str) -> dict[str, Any] | None:
        """Who places order `n` of `customer`: the customer itself, or every third order an operator."""
        if not self.authenticated:
            return None
        return OPERATOR if n % 3 == 0 else {"subject": customer, "roles": ["customer"]}


def lines_of(n: int) -> list[dict[str, Any]]:
    lines = [{"sku": f"SKU-{n % 3 + 1}", "quantity": 1 + n % 2}]
    return lines + [{"sku": "SKU-3", "quantity": 1}] if n % 4 == 0 else lines


async def load(callers: Callers) -> list[dict[str, Any]]:
    """Stock the catalog and place every order; answer one manifest entry per placement (its key,
    caller, request, order and saga, and what became of it), the unfinished last. Returns while the
    unfinished orders wait at their shipment."""
    staff = callers.staff()
    await staff.data(WAREHOUSE)
    for sku, quantity in RECEIVED.items():
        await staff.data(CATALOG, sku=sku, quantity=quantity)
    placed = []
    for n in range(COMPLETED):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        who = callers.placer(n, customer)
        placed.append(await place(callers, who, f"order-{n}", customer, lines_of(n), "COMPLETED"))
    for n in range(SHORT):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        lines = [{"sku": "SKU-1", "quantity": 1000}]
        who = callers.placer(n, customer)
        placed.append(await place(callers, who, f"short-{n}", customer, lines, "FAILED"))
    if callers.authenticated:
        # Keys are the caller's own: another customer's same key is another order.
        who = {"subject": CUSTOMERS[2], "roles": ["customer"]}
        placed.append(await place(callers, who, "order-1", CUSTOMERS[2], lines_of(1), "COMPLETED"))
    for n in DISPATCHED:
        await staff.data(DISPATCH, id=placed[n]["shipmentId"])
        placed[n]["outcome"] = "DISPATCHED"
    for n in CANCELLED:
        await staff.data(CANCEL, id=placed[n]["orderId"])
        await wait_for(staff, placed[n]["sagaId"], "FAILED")
        placed[n]["outcome"] = "CANCELLED"
    await staff.data(DELAY_SHIPMENTS)
    for n in range(UNFINISHED):
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        who = callers.placer(n, customer)
        placed.append(await place(callers, who, f"unfinished-{n}", customer, lines_of(n), None))
    for entry in placed[-UNFINISHED:]:
        await wait_for(staff, entry["sagaId"], "SHIPMENT_CREATING")
        entry["outcome"] = "UNFINISHED"
    for entry in placed:
        del entry["shipmentId"]
    return placed


async def place(
    callers: Callers,
    who: dict[str, Any] | None,
    key: str,
    customer: str,
    lines: list[dict[str, Any]],
    outcome: str | None,
) -> dict[str, Any]:
    """Place one order for `customer` with `key` as `who`, awaiting `outcome` (None: not awaited)."""
    request = {"customerId": customer, "lines": lines}
    wait = {"awaitOutcomeMs": 10_000} if outcome else {}
    answer = await callers.caller(who).data(PLACE, input={**request, "idempotencyKey": key, **wait})
    payload = answer["placeOrder"]
    assert not payload["userErrors"], payload["userErrors"]
    assert outcome is None or payload["saga"]["status"] == outcome, payload
    shipment = payload["order"]["shipment"]
    return {
        "key": key,
        "caller": who,
        "request": request,
        "orderId": payload["order"]["id"],
        "sagaId": payload["saga"]["id"],
        "outcome": outcome,
        "shipmentId": shipment and shipment["id"],
    }


async def wait_for(staff: Caller, saga_id: str, status: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if (await staff.data(SAGA, id=saga_id))["saga"]["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"saga {saga_id} did not reach {status}")
