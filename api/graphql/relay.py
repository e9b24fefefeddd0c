"""Relay-style reading: `node(id)` finds any object with an identity by its global id (`find_node`),
and `orders` / `sagas` / `stockMovements` are connections, newest first, paged with opaque keyset
cursors (`first` / `after`) that stay put as new rows arrive. A customer finds only its own: another's
reads as null, and lists hold only its own rows."""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy import Row
from strawberry.types import Info

from api.access.auth import Principal
from api.access.rules import customer_filter, may_act_for, may_find_catalog
from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.inputs import as_utc, refuse_unstorable
from api.graphql.loaders import loaders
from api.graphql.node_ids import catalog_key
from api.graphql.types import (
    Node,
    Order,
    OrderStatus,
    Product,
    Saga,
    SagaStatus,
    Shipment,
    StockLevel,
    StockMovement,
    Warehouse,
    principal,
    service,
)
from persistence.read.paging import PageFilter, Position

DEFAULT_PAGE = 20
MAX_PAGE = 100

T = TypeVar("T")


@strawberry.type(description="Where a page sits among all edges (Relay cursor connections).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(
        description="Whether edges come before this page: true for a page asked for `after` a cursor "
        "(that cursor's edge comes before it), false for the first page."
    )
    start_cursor: str | None = strawberry.field(description="The first edge's cursor; null when empty.")
    end_cursor: str | None = strawberry.field(description="The last edge's cursor; null when empty.")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo


def encode_cursor(position: Position) -> str:
    raw = json.dumps([position.at.isoformat(), position.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> Position:
    """The position `cursor` stands for. Raises BAD_USER_INPUT "invalid cursor" unless it is one
    this API made (a UTC time and a UUID) and only if encoding its position again gives it back, so
    whatever else it holds (other JSON, a time that cannot be moved to UTC, a number or text for an
    id) is refused here, never handed to the database."""
    try:
        at, id = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        position = Position(as_utc(datetime.fromisoformat(at)), str(uuid.UUID(id)))
        if encode_cursor(position) == cursor:
            return position
    except (binascii.Error, ValueError, TypeError, AttributeError, RecursionError, GraphQLError):
        pass
    raise client_error("invalid cursor: pass an endCursor this API returned", ClientErrorCode.BAD_USER_INPUT)


def _values(statuses: Sequence[enum.Enum] | None) -> list[str]:
    return [s.value for s in statuses or ()]


def _position(after: str | None) -> Position | None:
    return None if after is None else decode_cursor(after)


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not 0 <= first <= MAX_PAGE:
        raise client_error(
            f"first must be between 0 and {MAX_PAGE}, got {first}",
            ClientErrorCode.BAD_USER_INPUT,
            argument="first",
        )
    return first


def _may_list(caller: Principal, customer_id: str | None) -> bool:
    """A list asked for another customer is empty to a customer, as if it had no rows."""
    return customer_id is None or may_act_for(caller, customer_id)


def _connection(
    rows: Sequence[Row], first: int, after: str | None, time: str, node: Callable[[Row], T]
) -> Connection[T]:
    """A page of the `first` rows (one more was read to tell whether a next page exists)."""
    edges = [Edge(cursor=encode_cursor(Position(getattr(r, time), r.id)), node=node(r)) for r in rows[:first]]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )


async def find_node(info: Info, id: str) -> Node | None:
    """The object whose global id is `id` (`api.graphql.node_ids`), or None when there is none or the caller
    may not see it (`api.access.rules`): the one place where an id becomes an object."""
    caller = principal(info)
    if (catalog := catalog_key(id)) is not None:
        kind, key = catalog
        refuse_unstorable("id", [kind, *key])  # what the id holds, checked as if sent as it is
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
    read = service(info).read
    match kind, key:
        case "Product", [sku]:
            return next((Product.from_row(r) for r in await read.products([sku])), None)
        case "Warehouse", [code]:
            return next(iter(Warehouse.from_rows(await read.warehouses([code]))), None)
        case "Section", [warehouse_code, code]:
            warehouses = Warehouse.from_rows(await read.warehouses([warehouse_code]))
            return next((s for w in warehouses for s in w.sections if s.code == code), None)
        case "StockLevel", [warehouse_code, section_code, sku]:
            held = [r for r in await read.stock_levels(sku) if r.warehouse_code == warehouse_code]
            return next((StockLevel.from_row(r) for r in held if r.section_code == section_code), None)
    return None


@strawberry.type
class RelayQueries:
    @strawberry.field(
        description="The object with this global id (a saga, order, shipment, product, warehouse, "
        "section or stock level), or null when there is none."
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await find_node(info, str(id))

    @strawberry.field(description=f"Orders, newest first; at most {MAX_PAGE} a page.")
    async def orders(
        self,
        info: Info,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
        status: list[OrderStatus] | None = None,  # type: ignore[valid-type]
        customer_id: str | None = None,
        placed_after: Annotated[datetime | None, strawberry.argument(description="Inclusive.")] = None,
        placed_before: Annotated[datetime | None, strawberry.argument(description="Exclusive.")] = None,
    ) -> Connection[Order]:
        first, caller = page_size(first), principal(info)
        where = PageFilter(_values(status), customer_filter(caller, customer_id), placed_after, placed_before)
        rows: Sequence[Row] = []
        if _may_list(caller, customer_id):
            rows = await service(info).read.order_page(where, _position(after), first + 1)
        return _connection(rows, first, after, "created_at", Order.from_row)

    @strawberry.field(description=f"Sagas, newest first; at most {MAX_PAGE} a page.")
    async def sagas(
        self,
        info: Info,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
        status: list[SagaStatus] | None = None,  # type: ignore[valid-type]
        customer_id: str | None = None,
        started_after: Annotated[datetime | None, strawberry.argument(description="Inclusive.")] = None,
        started_before: Annotated[datetime | None, strawberry.argument(description="Exclusive.")] = None,
    ) -> Connection[Saga]:
        first, caller = page_size(first), principal(info)
        where = PageFilter(
            _values(status), customer_filter(caller, customer_id), started_after, started_before
        )
        rows: Sequence[Row] = []
        if _may_list(caller, customer_id):
            rows = await service(info).read.saga_page(where, _position(after), first + 1)
        for row in rows:
            # The page's rows are what `Order.saga` would load again.
            loaders(info).sagas.prime(row.id, row)
        return _connection(rows, first, after, "started_at", Saga.from_row)

    @strawberry.field(
        description=f"The stock movements of one SKU (in one warehouse or section if given), newest "
        f"first; at most {MAX_PAGE} a page. Added up per section, they are its onHand and reserved."
    )
    async def stock_movements(
        self,
        info: Info,
        sku: str,
        warehouse_code: str | None = None,
        section_code: str | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
        occurred_after: Annotated[datetime | None, strawberry.argument(description="Inclusive.")] = None,
        occurred_before: Annotated[datetime | None, strawberry.argument(description="Exclusive.")] = None,
    ) -> Connection[StockMovement]:
        first = page_size(first)
        where = PageFilter(since=occurred_after, until=occurred_before)
        rows = await service(info).read.stock_movement_page(
            sku, warehouse_code, section_code, where, _position(after), first + 1
        )
        return _connection(rows, first, after, "occurred_at", StockMovement.from_row)
