"""Relay-style reading: `node(id)` finds a saga or an order, and `orders` / `sagas` are connections,
newest first, paged with opaque keyset cursors (`first` / `after`) that stay put as new rows arrive."""

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

from api.errors import ClientErrorCode, client_error
from api.inputs import as_utc
from api.loaders import loaders
from api.types import Node, Order, OrderStatus, Saga, SagaStatus, service
from persistence.paging import PageFilter, Position

DEFAULT_PAGE = 20
MAX_PAGE = 100

T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


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


def _page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if not 0 <= first <= MAX_PAGE:
        raise client_error(
            f"first must be between 0 and {MAX_PAGE}, got {first}",
            ClientErrorCode.BAD_USER_INPUT,
            argument="first",
        )
    return first


def _connection(rows: Sequence[Row], first: int, time: str, node: Callable[[Row], T]) -> Connection[T]:
    edges = [Edge(cursor=encode_cursor(Position(getattr(r, time), r.id)), node=node(r)) for r in rows[:first]]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None),
    )


@strawberry.type
class RelayQueries:
    @strawberry.field(description="The saga or order with this id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        saga, order = await asyncio.gather(
            loaders(info).sagas.load(str(id)), loaders(info).orders.load(str(id))
        )
        if saga is not None:
            return Saga.from_row(saga)
        return Order.from_row(order) if order is not None else None

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
        first = _page_size(first)
        where = PageFilter(_values(status), customer_id, placed_after, placed_before)
        rows = await service(info).read.order_page(where, _position(after), first + 1)
        return _connection(rows, first, "created_at", Order.from_row)

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
        first = _page_size(first)
        where = PageFilter(_values(status), customer_id, started_after, started_before)
        rows = await service(info).read.saga_page(where, _position(after), first + 1)
        for row in rows:
            # The page's rows are what `Order.saga` would load again.
            loaders(info).sagas.prime(row.id, row)
        return _connection(rows, first, "started_at", Saga.from_row)
