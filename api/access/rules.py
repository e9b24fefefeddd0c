"""Who may do what: every root field of the schema with the roles that may call it, and the ownership
rule that narrows what a customer sees and does. `api/access/guard.py` enforces the table on every
operation, over HTTP and WebSocket alike; a root field without a row here is refused to everyone.

The roles (a token's `roles` claim):

- customer: its own orders and sagas only (the token's `sub` is its customer id), and the products
  a shop shows. Another customer's order or saga reads as null, never as forbidden, so ids leak
  nothing; lists and the feed are filtered to its own.
- operator: every customer's orders and sagas, orders placed on a customer's behalf, the catalog and
  stock, repairing sagas (retry, abort) and the figures that tell which need it.
- admin: everything, and staging participant faults (on a service run with fault injection).
- warehouse: a remote warehouse service (api/outbound/warehouse.py) reporting what it did with the
  shipments it was sent: their outcome (`reportShipmentOutcome`) and their dispatch
  (`dispatchShipment`), nothing else.

Who stepped in on a saga (retried, aborted or cancelled it) is recorded with the role they acted in;
staff are shown the person, a customer only the role (`shown_actor`).
"""

from __future__ import annotations

from collections.abc import Mapping

from strawberry.types.graphql import OperationType

from api.access.auth import Principal, Role

# Every role of the people ordersaga serves; a warehouse service's token acts only where it is named.
EVERYONE = frozenset({Role.CUSTOMER, Role.OPERATOR, Role.ADMIN})
STAFF = frozenset({Role.OPERATOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})
WAREHOUSE_SERVICE = frozenset({Role.WAREHOUSE, Role.ADMIN})

# Operation -> the roles that may call it. Ownership (below) narrows what EVERYONE's rows return.
RULES: Mapping[OperationType, Mapping[str, frozenset[Role]]] = {
    OperationType.QUERY: {
        "order": EVERYONE,
        "saga": EVERYONE,
        "node": EVERYONE,
        "nodes": EVERYONE,  # each as `node` finds it
        "orders": EVERYONE,
        "sagas": EVERYONE,
        "journalEvents": EVERYONE,  # a customer's own sagas' transitions only
        "products": EVERYONE,  # what the shop sells and how much is available
        "stockLevels": STAFF,  # where stock lies, warehouse by warehouse, is the business's own
        "warehouses": STAFF,
        "inventoryContention": STAFF,
        "sagaMetrics": STAFF,
        "sagaFailures": STAFF,
        "sagaActivity": STAFF,
        "sagasNeedingAttention": STAFF,
        "participantFaults": ADMINS,
        "stockMovements": STAFF,  # the warehouse's own ledger
        "webhookEndpoints": ADMINS,  # where the business's events go is an admin's decision
        "webhookDeliveries": STAFF,  # operators follow deliveries and send failed ones again
    },
    OperationType.MUTATION: {
        "placeOrder": EVERYONE,  # a customer only in its own name
        "cancelOrder": EVERYONE,  # a customer only its own orders
        "registerWarehouse": STAFF,  # a serviceUrl in it too: it is where operators set a warehouse up
        "updateWarehouse": STAFF,
        "registerProduct": STAFF,
        "receiveStock": STAFF,
        "retrySaga": STAFF,
        "abortSaga": STAFF,
        "retrySagas": STAFF,
        "abortSagas": STAFF,
        "dispatchShipment": STAFF | WAREHOUSE_SERVICE,  # the warehouse reports what it sent
        "reportShipmentOutcome": WAREHOUSE_SERVICE,  # a remote warehouse's later answer to a command
        "adjustStock": STAFF,
        "setParticipantFault": ADMINS,
        "clearParticipantFaults": ADMINS,
        "loseCommitAnswers": ADMINS,
        "createWebhookEndpoint": ADMINS,
        "updateWebhookEndpoint": ADMINS,
        "deleteWebhookEndpoint": ADMINS,
        "redeliverWebhooks": STAFF,
    },
    OperationType.SUBSCRIPTION: {
        "sagaUpdates": EVERYONE,
        "sagaFeed": EVERYONE,
    },
}


def roles_sentence(kind: OperationType, field: str) -> str:
    """What the schema says of who may call the root field `field` of `kind`, made from RULES, so that
    the documentation and the guard cannot disagree: "Roles: operator, admin; others are refused with
    FORBIDDEN." (roles in Role's order)."""
    allowed = RULES.get(kind, {}).get(field, frozenset())
    if not allowed:
        return "Roles: none; every caller is refused with FORBIDDEN."
    names = ", ".join(role.value for role in Role if role in allowed)
    return (
        f"Roles: {names}." if allowed == set(Role) else f"Roles: {names}; others are refused with FORBIDDEN."
    )


# Outside GraphQL, /healthz, /readyz and /dashboard (a page shell that holds no data: it reads through
# GraphQL, with its caller's token) are open to anyone; /metrics is for these roles:
METRICS_READERS = STAFF


def sees_every_customer(principal: Principal) -> bool:
    """Staff see and act for every customer; anyone else only for itself."""
    return bool(principal.roles & STAFF)


def acting_role(principal: Principal) -> Role:
    """The role an intervention of `principal` is recorded in: its most powerful one."""
    return next((role for role in (Role.ADMIN, Role.OPERATOR) if role in principal.roles), Role.CUSTOMER)


# Shown to a customer for someone who stepped in before the journal kept their role: only staff
# could, then, besides the customer itself.
UNRECORDED_ROLE = "staff"


def shown_actor(viewer: Principal, actor: str | None, actor_role: str | None) -> str | None:
    """Who stepped in (`actor`, a token subject, in `actor_role`) as `viewer` may know it: staff see
    the subject; a customer sees itself as itself and anyone else as the role they acted in
    ("operator", "admin"; UNRECORDED_ROLE when not recorded), never who it was."""
    if actor is None or sees_every_customer(viewer) or actor == viewer.subject:
        return actor
    return actor_role or UNRECORDED_ROLE


def speaks_for(principal: Principal, warehouse_code: str) -> bool:
    """Whether `principal` may report on and dispatch the shipments of `warehouse_code`: staff for
    every warehouse, a `warehouse` token for those its `warehouses` claim names (every one without
    the claim). A warehouse's service is one party among several; it speaks only for its own."""
    return (
        sees_every_customer(principal)
        or principal.warehouses is None
        or warehouse_code in principal.warehouses
    )


def may_act_for(principal: Principal, customer_id: str) -> bool:
    """The ownership rule: whether `principal` may see, place or cancel the orders (and sagas) of
    `customer_id`."""
    return sees_every_customer(principal) or customer_id == principal.subject


# `node(id)` shows a catalog object to the roles that may list it: the row of its list above.
CATALOG_LISTS = {
    "Product": "products",
    "Warehouse": "warehouses",
    "Section": "warehouses",
    "StockLevel": "stockLevels",
}


def may_find_catalog(principal: Principal, kind: str) -> bool:
    """Whether `principal` may find a catalog object of `kind` ('Product', 'Warehouse', ...) by its id."""
    lister = CATALOG_LISTS.get(kind)  # None: no such kind, nothing to find
    return lister is not None and bool(principal.roles & RULES[OperationType.QUERY][lister])


def customer_filter(principal: Principal, requested: str | None) -> str | None:
    """The customer a list's rows must belong to (None: any): what was asked for, for staff; the
    principal itself for anyone else (a list asked for another customer is empty: `may_act_for`)."""
    return requested if sees_every_customer(principal) else principal.subject
