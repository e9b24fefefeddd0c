"""Live subscriptions: one saga's transitions, or every saga's, as they commit.

Both read transitions from `saga_timeline`, past the last sequence they sent, whenever the hub says a
saga has new ones. They subscribe to the hub before their first read, so no commit can fall between
that read and the first notice; reading past a cursor, they never repeat a transition, and however
many notices were merged while they were busy, they never skip one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncGenerator, Collection, Iterator

import strawberry
from graphql import ExecutionResult, GraphQLError
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from api.hub import DEFAULT_LIMIT, FellBehind, TransitionHub
from api.types import Saga, SagaEvent, SagaStatus, service
from domain.saga import TERMINAL_STATUSES
from domain.saga import SagaStatus as DomainSagaStatus
from persistence.queries import ReadModel

# As many finished sagas as a subscriber may have pending notices for.
FINISHED_MEMORY = DEFAULT_LIMIT


@strawberry.type(description="A saga's transition, sent as it commits: one per journal event.")
class SagaUpdate(SagaEvent):
    @strawberry.field(description="The saga as it is when this update is sent: at this transition or later.")
    async def saga(self, info: Info) -> Saga:
        row = await service(info).read.saga(self.saga_id)
        if row is None:
            raise GraphQLError(f"saga {self.saga_id} cannot be read")
        return Saga.from_row(row)


async def updates_of_saga(
    read: ReadModel, hub: TransitionHub, saga_id: str
) -> AsyncGenerator[SagaUpdate, None]:
    """The saga's newest transition (its current state), then every later one in sequence order, up
    to and including a terminal status."""
    with hub.subscribe(saga_id) as notices:
        latest = await read.latest_transition(saga_id)
        if latest is None:
            raise GraphQLError(f"no saga with id {saga_id}")
        sent = SagaUpdate.from_row(latest)
        yield sent
        while sent.status not in TERMINAL_STATUSES:
            await notices.next()
            for row in await read.transitions_after({saga_id: sent.sequence}):
                sent = SagaUpdate.from_row(row)
                yield sent


async def updates_of_all_sagas(
    read: ReadModel, hub: TransitionHub, statuses: Collection[DomainSagaStatus] | None
) -> AsyncGenerator[SagaUpdate, None]:
    """Every saga's transitions committed from now on, in sequence order per saga; with `statuses`,
    only those after which the saga is in one of them. It never completes."""
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
                raise GraphQLError(f"{behind}; subscribe again") from behind
            after = {n.saga_id: cursors.get(n.saga_id, n.first - 1) for n in batch}
            read_now: dict[str, list[SagaUpdate]] = defaultdict(list)
            for row in await read.transitions_after(after):
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
            refusal = GraphQLError(
                "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql"
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
        return updates_of_saga(svc.read, svc.hub, str(saga_id))

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
        return updates_of_all_sagas(svc.read, svc.hub, statuses)
