"""Relay-style reading: `node(id)` and `nodes(ids)` find any object with an identity by its global
id (`find_node`), and `orders` / `sagas` / `stockMovements` are connections (api/graphql/connections.py),
newest first. A customer finds only its own: another's reads as null, and lists hold only its own
rows."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.access.auth import Principal
from api.access.rules import customer_filter, may_act_for, may_find_catalog
from api.graphql.connections import (
    PAGING,
    After,
    Before,
    Connection,
    First,
    Last,
    connection,
    cursor_window,
)
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.edge.inputs import refuse_unstorable
from api.graphql.enums import OrderStatus, SagaStatus
from api.graphql.loaders import loaders
from api.graphql.node_ids import catalog_key
from api.graphql.types import (
    Node,
    Order,
    Product,
    Saga,
    Shipment,
    StockLevel,
    StockMovement,
    Warehouse,
    principal,
    service,
)
from persistence.read.paging import PageFilter

MAX_NODES = 100  # ids one `nodes` call may look up, as GitHub's API allows


def _values(statuses: Sequence[enum.Enum] | None) -> list[str]:
    return [s.value for s in statuses or ()]


def _may_list(caller: Principal, customer_id: str | None) -> bool:
    """A list asked for another customer is empty to a customer, as if it had no rows."""
    return customer_id is None or may_act_for(caller, customer_id)


async def _no_rows() -> int:
    """The count of a list that `_may_list` empties."""
    return 0


async def find_node(info: Info, id: str, argument: str) -> Node | None:
    """The object whose global id is `id` (`api.graphql.node_ids`), or None when there is none or the caller
    may not see it (`api.access.rules`): the one place where an id becomes an object. Raises
    BAD_USER_INPUT, naming `argument`, when the id holds text that cannot be stored."""
    caller = principal(info)
    if (catalog := catalog_key(id)) is not None:
        kind, key = catalog
        refuse_unstorable(argument, [kind, *key])  # what the id holds, checked as if sent as it is
        return await _find_catalog_node(info, kind, key) if may_find_catalog(caller, kind) else None
    saga, order, shipment = await asyncio.gather(
        loaders(info).sagas.load(id), loaders(info).orders.load(id), loaders(info).shipments_by_id.load(id)
    )
    if saga is not None:
        return Saga.from_row(saga) if may_act_for(caller, saga.customer_id) else None
    if order is not None:
        return Order.from_row(order) if may_act_for(caller, order.customer_id) else None
    if shipment is not None:
        shipped = await loaders(info).orders.load(shipment.order_id)
        owner = shipped.customer_id if shipped is not None else None
        return Shipment.from_row(shipment) if owner is not None and may_act_for(caller, owner) else None
    return None


async def _find_catalog_node(info: Info, kind: str, key: list[str]) -> Node | None:
    catalog = service(info).catalog
    match kind, key:
        case "Product", [sku]:
            return next((Product.from_row(r) for r in await catalog.products([sku])), None)
        case "Warehouse", [code]:
            return next(iter(Warehouse.from_rows(await catalog.warehouses([code]))), None)
        case "Section", [warehouse_code, code]:
            warehouses = Warehouse.from_rows(await catalog.warehouses([warehouse_code]))
            return next((s for w in warehouses for s in w.sections if s.code == code), None)
        case "StockLevel", [warehouse_code, section_code, sku]:
            held = [r for r in await catalog.stock_levels(sku) if r.warehouse_code == warehouse_code]
            return next((StockLevel.from_row(r) for r in held if r.section_code == section_code), None)
    return None


CustomerId = Annotated[
    str | None,
    strawberry.argument(
        description="Only this customer's. A customer sees only its own, so another customer's id gives "
        "an empty list."
    ),
]
Inclusive = Annotated[datetime | None, strawberry.argument(description="Only those at or after this time.")]
Exclusive = Annotated[datetime | None, strawberry.argument(description="Only those before this time.")]


@strawberry.type
class RelayQueries:
    @strawberry.field(
        description="The object with this global id (a saga, order, shipment, product, warehouse, "
        "section or stock level), or null when there is none or the caller may not see it (another "
        "customer's order, saga or shipment; to a customer, any catalog object but a product)."
    )
    async def node(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="A global id.")]
    ) -> Node | None:
        return await find_node(info, str(id), "id")

    @strawberry.field(
        description="The objects with these global ids, in the same order, each as `node(id:)` would "
        f"find it (null where it finds none). At most {MAX_NODES} ids, or BAD_USER_INPUT."
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[
            list[strawberry.ID], strawberry.argument(description=f"Global ids, at most {MAX_NODES}.")
        ],
    ) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise client_error(
                f"ids may hold at most {MAX_NODES} ids, got {len(ids)}",
                ClientErrorCode.BAD_USER_INPUT,
                argument="ids",
            )
        return list(await asyncio.gather(*(find_node(info, str(id), "ids") for id in ids)))

    @strawberry.field(description=f"Orders, newest placed first. {PAGING}")
    async def orders(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        status: Annotated[
            list[OrderStatus] | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only orders in one of these statuses."),
        ] = None,
        customer_id: CustomerId = None,
        placed_after: Inclusive = None,
        placed_before: Exclusive = None,
    ) -> Connection[Order]:
        asked, caller = cursor_window(first, after, last, before), principal(info)
        where = PageFilter(_values(status), customer_filter(caller, customer_id), placed_after, placed_before)
        if not _may_list(caller, customer_id):
            return connection([], asked, "created_at", Order.from_row, _no_rows)
        pages = service(info).pages
        rows = await pages.order_page(where, asked)
        return connection(rows, asked, "created_at", Order.from_row, lambda: pages.order_count(where))

    @strawberry.field(description=f"Sagas, newest started first. {PAGING}")
    async def sagas(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        status: Annotated[
            list[SagaStatus] | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only sagas in one of these statuses."),
        ] = None,
        customer_id: CustomerId = None,
        started_after: Inclusive = None,
        started_before: Exclusive = None,
    ) -> Connection[Saga]:
        asked, caller = cursor_window(first, after, last, before), principal(info)
        where = PageFilter(
            _values(status), customer_filter(caller, customer_id), started_after, started_before
        )
        if not _may_list(caller, customer_id):
            return connection([], asked, "started_at", Saga.from_row, _no_rows)
        pages = service(info).pages
        rows = await pages.saga_page(where, asked)
        for row in rows:
            # The page's rows are what `Order.saga` would load again.
            loaders(info).sagas.prime(row.id, row)
        return connection(rows, asked, "started_at", Saga.from_row, lambda: pages.saga_count(where))

    @strawberry.field(
        description="The stock movements of one SKU (in one warehouse or section if given), newest "
        f"first. Added up per section, they are its onHand and reserved. {PAGING}"
    )
    async def stock_movements(
        self,
        info: Info,
        sku: Annotated[str, strawberry.argument(description="The product's SKU.")],
        warehouse_code: Annotated[
            str | None, strawberry.argument(description="Only movements in this warehouse.")
        ] = None,
        section_code: Annotated[
            str | None, strawberry.argument(description="Only movements in sections with this code.")
        ] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
        occurred_after: Inclusive = None,
        occurred_before: Exclusive = None,
    ) -> Connection[StockMovement]:
        asked = cursor_window(first, after, last, before)
        where, catalog = PageFilter(since=occurred_after, until=occurred_before), service(info).catalog
        rows = await catalog.stock_movement_page(sku, warehouse_code, section_code, where, asked)
        return connection(
            rows,
            asked,
            "occurred_at",
            StockMovement.from_row,
            lambda: catalog.stock_movement_count(sku, warehouse_code, section_code, where),
        )
