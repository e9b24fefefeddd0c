"""Relay's cursor connections, as every paged list of the schema answers them: the page types
(`Connection`, `UncountedConnection`, `Edge`, `PageInfo`), opaque keyset cursors that stay put as
new rows arrive (`encode_cursor`, `decode_cursor`), the window of rows a page asks for (`window`),
and the paging arguments, described once. Forward with `first` / `after`, backward with `last` /
`before`."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Protocol, Self, TypeVar

import strawberry
from graphql import GraphQLError

from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.edge.inputs import as_utc
from persistence.read.paging import Position, Window

DEFAULT_PAGE = 20
MAX_PAGE = 100

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


def cursor_window(
    first: int | None, after: str | None, last: int | None, before: str | None
) -> Window[Position]:
    """`window` of a connection's arguments, its cursors decoded (a refusal naming its argument)."""
    return window(first, _cursor(after, "after"), last, _cursor(before, "before"))


def _cursor(cursor: str | None, argument: str) -> Position | None:
    return None if cursor is None else decode_cursor(cursor, argument)


def connection(
    rows: Sequence[R],
    asked: Window[Position],
    time: str,
    node: Callable[[R], T],
    counted: Callable[[], Awaitable[int]],
) -> Connection[T]:
    """The page of `rows`, read for `asked`, each at its (`time` column, id) position."""
    edges = [Edge(cursor=encode_cursor(Position(getattr(r, time), r.id)), node=node(r)) for r in rows]
    return Connection.of(edges, asked, counted=counted)


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
PAGING = (
    f"Paged by cursor, forward (`first`/`after`) or backward (`last`/`before`), at most {MAX_PAGE} "
    "a page; a cursor that this API did not make is refused with BAD_USER_INPUT, and so are `first` "
    "and `last` together."
)
