"""Live subscriptions: one saga's transitions, or every saga's, as they commit.

Both read transitions from `saga_timeline`, past the last sequence they sent, whenever the hub says a
saga has new ones. They subscribe to the hub before their first read, so no commit can fall between
that read and the first notice; reading past a cursor, they never repeat a transition, and however
many notices were merged while they were busy, they never skip one. A read that meets a transient
database error (no connection free in time, a connection lost) is tried again, later and later, so
the stream outlives the database's bad moments instead of ending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterator
from functools import partial
from typing import TypeVar

import strawberry
from graphql import ExecutionResult
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from api.access.rules import customer_filter
from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.types import Saga, SagaEvent, SagaStatus, principal, service
from api.hub import DEFAULT_LIMIT, FellBehind, TransitionHub
from domain.saga import TERMINAL_STATUSES
from domain.saga import SagaStatus as DomainSagaStatus
from persistence.database import is_transient
from persistence.queries import ReadModel

T = TypeVar("T")
log = logging.getLogger("ordersaga.api")

# A read that met a transient database error waits this long before its next try, doubling each time.
RETRY_FIRST = 0.1
RETRY_CAP = 5.0


async def patiently(read: Callable[[], Awaitable[T]]) -> T:
    """`read()`, tried again after each transient database error (`is_transient`), waiting from
    RETRY_FIRST seconds, doubling up to RETRY_CAP; a line is logged per wait. Other errors raise."""
    wait = RETRY_FIRST
    while True:
        try:
            return await read()
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("subscription read failed (%s); trying again in %.1f s", type(error).__name__, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, RETRY_CAP)
# As many finished sagas as a subscriber may have pending notices for.
FINISHED_MEMORY = DEFAULT_LIMIT


@strawberry.type(description="A saga's transition, sent as it commits: one per journal event.")
class SagaUpdate(SagaEvent):
    @strawberry.field(description="The saga as it is when this update is sent: at this transition or later.")
    async def saga(self, info: Info) -> Saga:
        read = service(info).read
        row = await patiently(partial(read.saga, self.saga_id))
        if row is None:
            raise RuntimeError(f"saga {self.saga_id} has a transition but no saga_view row")
        return Saga.from_row(row)


async def updates_of_saga(
    read: ReadModel, hub: TransitionHub, saga_id: str, customer_id: str | None = None
) -> AsyncGenerator[SagaUpdate, None]:
    """The saga's newest transition (its current state), then every later one in sequence order, up
    to and including a terminal status. With `customer_id`, another customer's saga is unknown."""
    unknown = client_error(f"no saga with id {saga_id}", ClientErrorCode.BAD_USER_INPUT, argument="sagaId")
    if customer_id is not None:
        row = await read.saga(saga_id)
        if row is None or row.customer_id != customer_id:
            raise unknown
    with hub.subscribe(saga_id) as notices:
        latest = await patiently(partial(read.latest_transition, saga_id))
        if latest is None:
            raise unknown
        sent = SagaUpdate.from_row(latest)
        yield sent
        while sent.status not in TERMINAL_STATUSES:
            await notices.next()
            for row in await patiently(partial(read.transitions_after, {saga_id: sent.sequence})):
                sent = SagaUpdate.from_row(row)
                yield sent


async def updates_of_all_sagas(
    read: ReadModel,
    hub: TransitionHub,
    statuses: Collection[DomainSagaStatus] | None,
    customer_id: str | None = None,
) -> AsyncGenerator[SagaUpdate, None]:
    """Every saga's transitions committed from now on, in sequence order per saga; with `statuses`,
    only those after which the saga is in one of them; with `customer_id`, only that customer's
    sagas. It never completes."""
    with hub.subscribe() as notices:
        # The last sequence read per saga; dropped once the saga's terminal commit has been read, as
        # nothing more can come for it.
        cursors: dict[str, int] = {}
        # Sagas whose end was sent, the latest FINISHED_MEMORY of them: a late notice of one (a
        # catch-up after another process's reconnect) must not send its transitions again.
        finished: dict[str, None] = {}
        while True:
            try:
                batch = [n for n in await notices.next() if n.saga_id not in finished]
            except FellBehind as behind:
                raise client_error(
                    f"{behind}; subscribe again", ClientErrorCode.SERVICE_UNAVAILABLE, retryAfterSeconds=0
                ) from behind
            after = {n.saga_id: cursors.get(n.saga_id, n.first - 1) for n in batch}
            read_now: dict[str, list[SagaUpdate]] = defaultdict(list)
            for row in await patiently(partial(read.transitions_after, after, customer_id)):
                read_now[row.saga_id].append(SagaUpdate.from_row(row))
            for notice in batch:
                for update in read_now[notice.saga_id]:
                    cursors[notice.saga_id] = update.sequence
                    if statuses is None or update.status in statuses:
                        yield update
                if notice.status in TERMINAL_STATUSES and cursors.get(notice.saga_id) == notice.last:
                    del cursors[notice.saga_id]
                    finished[notice.saga_id] = None
                    if len(finished) > FINISHED_MEMORY:
                        del finished[next(iter(finished))]


class OnlyOverWebSocket(SchemaExtension):
    """Refuses subscriptions sent over HTTP with an error saying where they are served: strawberry
    would otherwise run them as queries, which fail with a misleading error."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.operation_type is OperationType.SUBSCRIPTION and not isinstance(
            context.context["request"], WebSocket
        ):
            refusal = client_error(
                "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql",
                ClientErrorCode.BAD_REQUEST,
            )
            context.result = ExecutionResult(data=None, errors=[refusal])
        yield


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The saga's current state (its newest transition), then every later transition in "
        "sequence order; completes after COMPLETED or FAILED. An unknown id is an error."
    )
    def saga_updates(self, info: Info, saga_id: strawberry.ID) -> AsyncGenerator[SagaUpdate, None]:
        svc = service(info)
        return updates_of_saga(svc.read, svc.hub, str(saga_id), customer_filter(principal(info), None))

    @strawberry.subscription(
        description="Every saga's transitions from now on, in sequence order per saga; with `status`, "
        "only those after which the saga has one of these statuses. Never completes."
    )
    def saga_feed(
        self,
        info: Info,
        status: list[SagaStatus] | None = None,  # type: ignore[valid-type]
    ) -> AsyncGenerator[SagaUpdate, None]:
        svc = service(info)
        statuses = None if status is None else {DomainSagaStatus(s) for s in status}
        return updates_of_all_sagas(svc.read, svc.hub, statuses, customer_filter(principal(info), None))
