"""The journal as clients read it: each event as a `SagaUpdate` with its opaque `cursor`, the check
every cursor a client sends back goes through, and `journalEvents`, the whole journal in commit order
as a Relay connection for consumers that catch up in batches (the `sagaFeed` subscription follows
the same order live, api/graphql/subscriptions.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.access.rules import customer_filter
from api.graphql.connections import (
    MAX_PAGE,
    After,
    Before,
    Edge,
    Last,
    UncountedConnection,
    first_description,
    window,
)
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.renditions import Renditions
from api.graphql.types import Saga, SagaEvent, principal, service
from persistence.read.event_log import decode_cursor
from persistence.read.paging import Window
from persistence.read.rows import SagaRow, TransitionRow
from persistence.read.sagas import SagaReads
from persistence.read.timeline import TimelineReads

DEFAULT_JOURNAL_PAGE = 100


@strawberry.type(description="A saga's transition, as it committed: one per journal event.")
class SagaUpdate(SagaEvent):
    # The saga_view row read right after this transition's: the saga at this transition or later.
    saga_row: strawberry.Private[SagaRow | None] = None
    renditions: strawberry.Private[Renditions] = dataclasses.field(default_factory=Renditions)

    @classmethod
    def of(cls, transition: TransitionRow, saga: SagaRow | None) -> SagaUpdate:
        return cls.from_row(transition, saga_row=saga)

    @property
    def customer_id(self) -> str | None:
        return None if self.saga_row is None else self.saga_row.customer_id

    @strawberry.field(description="The saga as it is when this update is sent: at this transition or later.")
    def saga(self) -> Saga:
        if self.saga_row is None:
            raise RuntimeError(f"saga {self.saga_id} has a transition but no saga_view row")
        return Saga.from_row(self.saga_row)


async def updates_after(
    timeline: TimelineReads, sagas: SagaReads, position: int, limit: int, customer_id: str | None = None
) -> list[SagaUpdate]:
    """The transitions past journal position `position`, in position order, at most `limit`; with
    `customer_id`, only that customer's sagas'. Each with its saga as read just after."""
    return await _updates(sagas, await timeline.journal_page(Window(limit, after=position), customer_id))


async def _updates(sagas: SagaReads, rows: Sequence[TransitionRow]) -> list[SagaUpdate]:
    """The updates of these timeline rows, in their order, each with its saga as read now."""
    if not rows:
        return []
    found = {saga.id: saga for saga in await sagas.sagas(list({row.saga_id for row in rows}))}
    return [SagaUpdate.of(row, found.get(row.saga_id)) for row in rows]


async def journal_position(info: Info, cursor: str | None, argument: str = "after") -> int | None:
    """The journal position of `cursor` (None for None). Raises BAD_USER_INPUT (naming `argument`)
    unless it is the cursor of an event the caller may see: one this API made, of an event that
    exists, of the caller's own sagas for a customer. A cursor of another customer's event reads as
    unknown, as its saga would."""
    if cursor is None:
        return None
    refusal = client_error(
        "unknown cursor: pass the cursor of an event this API sent you",
        ClientErrorCode.BAD_USER_INPUT,
        argument=argument,
    )
    try:
        position = decode_cursor(cursor)
    except ValueError:
        raise refusal from None
    owner = await service(info).timeline.customer_at(position)
    customer_id = customer_filter(principal(info), None)
    if owner is None or (customer_id is not None and owner != customer_id):
        raise refusal
    return position


# `first` as every connection takes it, saying this one's default page.
JournalFirst = Annotated[int | None, strawberry.argument(description=first_description(DEFAULT_JOURNAL_PAGE))]


@strawberry.type
class JournalQueries:
    @strawberry.field(
        description="Every saga's transitions in journal (commit) order, oldest first: the same events "
        "and order as `sagaFeed`, in pages, for consumers that catch up in batches and then follow "
        "`sagaFeed(after:)` from the last cursor. Paged by cursor, forward (`first`/`after`) or "
        f"backward (`last`/`before`), at most {MAX_PAGE} a page ({DEFAULT_JOURNAL_PAGE} when neither "
        "`first` nor `last` is given); a cursor of no event the caller may see is refused with "
        "BAD_USER_INPUT, and so are `first` and `last` together. It has no `totalCount`, which would "
        "count the whole journal on every call: `hasNextPage` tells whether more follow. A customer "
        "sees only its own sagas' transitions."
    )
    async def journal_events(
        self,
        info: Info,
        first: JournalFirst = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> UncountedConnection[SagaUpdate]:
        asked = window(
            first,
            await journal_position(info, after, "after"),
            last,
            await journal_position(info, before, "before"),
            DEFAULT_JOURNAL_PAGE,
        )
        svc = service(info)
        rows = await svc.timeline.journal_page(asked, customer_filter(principal(info), None))
        updates = await _updates(svc.read, rows)
        return UncountedConnection.of([Edge(cursor=u.cursor, node=u) for u in updates], asked)
