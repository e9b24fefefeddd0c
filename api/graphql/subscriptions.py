"""Live subscriptions: one saga's transitions, or every saga's, as they commit.

Both take transitions from `saga_timeline`, past the last sequence they sent, whenever the hub says a
saga has new ones; the process reads each once for all its subscribers (api/live/recent_transitions.py).
They subscribe to the hub before their first read, so no commit can fall between that read and the
first notice; taking what is past a cursor, they never repeat a transition, and however many
notices were merged while they were busy, they never skip one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Collection, Iterator
from functools import partial

import strawberry
from graphql import ExecutionResult
from sqlalchemy import Row
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types import Info
from strawberry.types.graphql import OperationType

from api.access.rules import customer_filter
from api.graphql.errors import ClientErrorCode, client_error
from api.graphql.renditions import Renditions
from api.graphql.types import Saga, SagaEvent, SagaStatus, principal, service
from api.live.hub import DEFAULT_LIMIT, FellBehind, TransitionHub
from api.live.recent_transitions import RecentTransitions, Wanted, patiently
from domain.model.saga import TERMINAL_STATUSES
from domain.model.saga import SagaStatus as DomainSagaStatus
from persistence.read.queries import ReadModel

# As many finished sagas as a subscriber may have pending notices for.
FINISHED_MEMORY = DEFAULT_LIMIT


@strawberry.type(description="A saga's transition, sent as it commits: one per journal event.")
class SagaUpdate(SagaEvent):
    # The saga_view row read right after this transition's: the saga at this transition or later.
    saga_row: strawberry.Private[Row | None] = None
    renditions: strawberry.Private[Renditions] = dataclasses.field(default_factory=Renditions)

    @classmethod
    def of(cls, transition: Row, saga: Row | None) -> SagaUpdate:
        return cls.from_row(transition, saga_row=saga)

    @property
    def customer_id(self) -> str | None:
        return None if self.saga_row is None else self.saga_row.customer_id  # type: ignore[no-any-return]

    @strawberry.field(description="The saga as it is when this update is sent: at this transition or later.")
    def saga(self) -> Saga:
        if self.saga_row is None:
            raise RuntimeError(f"saga {self.saga_id} has a transition but no saga_view row")
        return Saga.from_row(self.saga_row)


LiveTransitions = RecentTransitions[SagaUpdate]


def live_transitions(read: ReadModel) -> LiveTransitions:
    """The transitions this process's subscriptions send, each read and made once."""
    return RecentTransitions(read, SagaUpdate.of)


async def updates_of_saga(
    transitions: LiveTransitions, hub: TransitionHub, saga_id: str, customer_id: str | None = None
) -> AsyncGenerator[SagaUpdate, None]:
    """The saga's newest transition (its current state), then every later one in sequence order, up
    to and including a terminal status. With `customer_id`, another customer's saga is unknown."""
    unknown = client_error(f"no saga with id {saga_id}", ClientErrorCode.BAD_USER_INPUT, argument="sagaId")
    read = transitions.read_model
    with hub.subscribe(saga_id) as notices:
        latest = await patiently(partial(read.latest_transition, saga_id))
        if latest is None:
            raise unknown
        sent = SagaUpdate.of(latest, await patiently(partial(read.saga, saga_id)))
        if customer_id is not None and sent.customer_id != customer_id:
            raise unknown
        yield sent
        while sent.status not in TERMINAL_STATUSES:
            (notice,) = await notices.next()  # one per saga, and this subscriber hears of one saga
            for update in (await transitions.past({saga_id: Wanted(sent.sequence, notice.last)}))[saga_id]:
                sent = update
                yield sent


async def updates_of_all_sagas(
    transitions: LiveTransitions,
    hub: TransitionHub,
    statuses: Collection[DomainSagaStatus] | None,
    customer_id: str | None = None,
) -> AsyncGenerator[SagaUpdate, None]:
    """Every saga's transitions committed from now on, in sequence order per saga; with `statuses`,
    only those after which the saga is in one of them; with `customer_id`, only that customer's
    sagas. It never completes."""
    with hub.subscribe() as notices:
        # The last sequence sent per saga; dropped once the saga's terminal commit has been sent, as
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
            wanted = {n.saga_id: Wanted(cursors.get(n.saga_id, n.first - 1), n.last) for n in batch}
            taken = await transitions.past(wanted)
            for notice in batch:
                updates = taken.get(notice.saga_id, [])
                if customer_id is not None and updates and updates[0].customer_id != customer_id:
                    continue
                for update in updates:
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
        return updates_of_saga(svc.live, svc.hub, str(saga_id), customer_filter(principal(info), None))

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
        return updates_of_all_sagas(svc.live, svc.hub, statuses, customer_filter(principal(info), None))
