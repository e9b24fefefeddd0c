"""Relay-style reading: `node(id)` and `nodes(ids)` find any object with an identity by its global
id (`find_node`), and `orders` / `sagas` / `stockMovements` are connections, newest first, paged with
opaque keyset cursors that stay put as new rows arrive: forward with `first` / `after`, backward with
`last` / `before` (Relay's cursor connections specification). A customer finds only its own: another's
reads as null, and lists hold only its own rows."""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, Self, TypeVar

import strawberry
from graphql import GraphQLError
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
from persistence.read.paging import PageFilter, Position, Window

DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_NODES = 100  # ids one `nodes` call may look up, as GitHub's API allows

T = TypeVar("T")


class _Listed(Protocol):
    """A row of a keyset-paged list: its id is half of its position."""

    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Listed)
P = TypeVar("P")


@strawberry.type(description="Where a page sits among all edges (Relay cursor connections).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="Whether edges come after this page: for a page asked for with `first`, whether "
        "more edges follow it; for one asked for with `last`, true when it was asked for `before` a "
        "cursor (that cursor's edge follows it)."
    )
    has_previous_page: bool = strawberry.field(
        description="Whether edges come before this page: for a page asked for with `last`, whether "
        "more edges precede it; for one asked for with `first`, true when it was asked for `after` a "
        "cursor (that cursor's edge precedes it)."
    )
    start_cursor: str | None = strawberry.field(
        description="The first edge's cursor (pass it as `before` for the page before); null when empty."
    )
    end_cursor: str | None = strawberry.field(
        description="The last edge's cursor (pass it as `after` for the page after); null when empty."
    )


@strawberry.type(description="One item of a connection, with the cursor that marks its place in the list.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(
        description="Opaque: pass it as `after` or `before` to page on from this edge."
    )
    node: T = strawberry.field(description="The item.")


@strawberry.type(
    name="Connection",
    description="A page of a list (Relay cursor connections): its edges with their cursors, the same "
    "items without them (`nodes`), and where the page sits.",
)
class UncountedConnection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(description="The page's items with their cursors, in list order.")
    page_info: PageInfo = strawberry.field(description="Where the page sits, and the cursors to page on.")

    @strawberry.field(
        description="The page's items, in the same order as `edges`, for clients that need no cursors."
    )
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]

    @classmethod
    def of(cls, read: list[Edge[T]], asked: Window[Any], **private: Any) -> Self:
        """The page of the edges `read` for `asked` (in read order, one more than asked for when
        more lie beyond), in list order; `private` sets a subclass's private fields. Relay's rules:
        a forward page has a next page when more were read, and a previous one when it starts
        after a cursor; a backward page the other way round."""
        size = asked.limit - 1
        more, edges = len(read) > size, read[:size]
        if asked.backward:
            edges.reverse()
        info = PageInfo(
            has_next_page=asked.before is not None if asked.backward else more,
            has_previous_page=more if asked.backward else asked.after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
        return cls(edges=edges, page_info=info, **private)


@strawberry.type(
    name="Connection",
    description="A page of a list (Relay cursor connections): its edges with their cursors, the same "
    "items without them (`nodes`), where the page sits, and how many items the whole list holds.",
)
class Connection(UncountedConnection[T], Generic[T]):
    # What `totalCount` answers, run only when it is asked for.
    counted: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(
        description="How many items the whole list holds under the same filters (and, for a customer, "
        "only its own), whatever the page and its cursors. Counted at query time: items that arrive or "
        "change between two queries change it."
    )
    async def total_count(self) -> int:
        return await self.counted()


def encode_cursor(position: Position) -> str:
    raw = json.dumps([position.at.isoformat(), position.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str, argument: str) -> Position:
    """The position `cursor`, the value of `argument`, stands for. Raises BAD_USER_INPUT "invalid
    cursor" (naming `argument`) unless it is one
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
    raise client_error(
        "invalid cursor: pass a startCursor or endCursor this API returned",
        ClientErrorCode.BAD_USER_INPUT,
        argument=argument,
    )


def _values(statuses: Sequence[enum.Enum] | None) -> list[str]:
    return [s.value for s in statuses or ()]


def _size(size: int | None, argument: str) -> int | None:
    if size is not None and not 0 <= size <= MAX_PAGE:
        raise client_error(
            f"{argument} must be between 0 and {MAX_PAGE}, got {size}",
            ClientErrorCode.BAD_USER_INPUT,
            argument=argument,
        )
    return size


def window(
    first: int | None, after: P | None, last: int | None, before: P | None, default: int = DEFAULT_PAGE
) -> Window[P]:
    """The rows a page asks for, plus one to tell whether more lie beyond it: the `first` after
    `after`, or the `last` before `before` (decoded cursors), or the first `default` when neither
    size is given. Raises BAD_USER_INPUT unless a size is 0 to MAX_PAGE, and for `first` and `last`
    together (Relay's specification allows refusing them, and the answer would be hard to read)."""
    first, last = _size(first, "first"), _size(last, "last")
    if first is not None and last is not None:
        raise client_error("pass first or last, not both", ClientErrorCode.BAD_USER_INPUT, argument="last")
    if last is not None:
        return Window(last + 1, after, before, backward=True)
    return Window((default if first is None else first) + 1, after, before)


def _window(first: int | None, after: str | None, last: int | None, before: str | None) -> Window[Position]:
    """`window` of a connection's arguments, its cursors decoded (a refusal naming its argument)."""
    return window(first, _cursor(after, "after"), last, _cursor(before, "before"))


def _cursor(cursor: str | None, argument: str) -> Position | None:
    return None if cursor is None else decode_cursor(cursor, argument)


def _may_list(caller: Principal, customer_id: str | None) -> bool:
    """A list asked for another customer is empty to a customer, as if it had no rows."""
    return customer_id is None or may_act_for(caller, customer_id)


async def _no_rows() -> int:
    """The count of a list that `_may_list` empties."""
    return 0


def _connection(
    rows: Sequence[R],
    asked: Window[Position],
    time: str,
    node: Callable[[R], T],
    counted: Callable[[], Awaitable[int]],
) -> Connection[T]:
    """The page of `rows`, read for `asked`, each at its (`time` column, id) position."""
    edges = [Edge(cursor=encode_cursor(Position(getattr(r, time), r.id)), node=node(r)) for r in rows]
    return Connection.of(edges, asked, counted=counted)


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


def first_description(default: int = DEFAULT_PAGE) -> str:
    """What `first` means on a connection whose page is `default` items when no size is given."""
    return (
        f"Page forward: this many items from the start (or after `after`), 0 to {MAX_PAGE}; "
        f"{default} when neither `first` nor `last` is given. Not with `last` (BAD_USER_INPUT)."
    )


# The arguments every connection takes, described once (`first` of a connection with another default
# page size: `first_description`).
First = Annotated[int | None, strawberry.argument(description=first_description())]
After = Annotated[
    str | None,
    strawberry.argument(description="A cursor (an `endCursor`): the page starts just after its item."),
]
Last = Annotated[
    int | None,
    strawberry.argument(
        description=f"Page backward: this many items from the end (or before `before`), 0 to "
        f"{MAX_PAGE}. Not with `first` (BAD_USER_INPUT)."
    ),
]
Before = Annotated[
    str | None,
    strawberry.argument(description="A cursor (a `startCursor`): the page ends just before its item."),
]
CustomerId = Annotated[
    str | None,
    strawberry.argument(
        description="Only this customer's. A customer sees only its own, so another customer's id gives "
        "an empty list."
    ),
]
Inclusive = Annotated[datetime | None, strawberry.argument(description="Only those at or after this time.")]
Exclusive = Annotated[datetime | None, strawberry.argument(description="Only those before this time.")]
PAGING = (
    f"Paged by cursor, forward (`first`/`after`) or backward (`last`/`before`), at most {MAX_PAGE} "
    "a page; a cursor that this API did not make is refused with BAD_USER_INPUT, and so are `first` "
    "and `last` together."
)


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
        asked, caller = _window(first, after, last, before), principal(info)
        where = PageFilter(_values(status), customer_filter(caller, customer_id), placed_after, placed_before)
        if not _may_list(caller, customer_id):
            return _connection([], asked, "created_at", Order.from_row, _no_rows)
        pages = service(info).pages
        rows = await pages.order_page(where, asked)
        return _connection(rows, asked, "created_at", Order.from_row, lambda: pages.order_count(where))

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
        asked, caller = _window(first, after, last, before), principal(info)
        where = PageFilter(
            _values(status), customer_filter(caller, customer_id), started_after, started_before
        )
        if not _may_list(caller, customer_id):
            return _connection([], asked, "started_at", Saga.from_row, _no_rows)
        pages = service(info).pages
        rows = await pages.saga_page(where, asked)
        for row in rows:
            # The page's rows are what `Order.saga` would load again.
            loaders(info).sagas.prime(row.id, row)
        return _connection(rows, asked, "started_at", Saga.from_row, lambda: pages.saga_count(where))

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
        asked = _window(first, after, last, before)
        where, catalog = PageFilter(since=occurred_after, until=occurred_before), service(info).catalog
        rows = await catalog.stock_movement_page(sku, warehouse_code, section_code, where, asked)
        return _connection(
            rows,
            asked,
            "occurred_at",
            StockMovement.from_row,
            lambda: catalog.stock_movement_count(sku, warehouse_code, section_code, where),
        )
