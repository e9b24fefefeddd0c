"""Live subscriptions: one saga's transitions, or every saga's, as they commit.

`sagaUpdates` takes one saga's transitions from `saga_timeline`, past the last sequence it sent,
whenever the hub says the saga has new ones; the process reads each once for all its subscribers
(api/live/recent_transitions.py). It subscribes to the hub before its first read, so no commit can
fall between that read and the first notice; taking what is past a cursor, it never repeats a
transition, and however many notices were merged while it was busy, it never skips one.

`sagaFeed` follows the whole journal in position order through the process's journal tail
(api/live/journal_tail.py), from a client's cursor or from now: positions become visible in commit
order, so asking for what is past the last position sent neither skips nor repeats.

Both send each transition only once the process's pacer lets it through (api/live/pacing.py), so
that thousands of subscribers woken by one commit do not hold the event loop from requests.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from contextlib import aclosing
from functools import partial
from typing import Annotated

import strawberry
from graphql import ExecutionResult
from starlette.websockets import WebSocket
from strawberry.types import ExecutionContext, Info
from strawberry.types.graphql import OperationType

from api.access.rules import customer_filter
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.edge.execution_limits import operation_answer_size
from api.graphql.enums import SagaStatus
from api.graphql.journal import SagaUpdate, journal_position
from api.graphql.types import principal, service
from api.live.hub import TransitionHub
from api.live.journal_tail import JournalTail
from api.live.pacing import VALUES_PER_PASS, Pacer
from api.live.recent_transitions import RecentTransitions, Wanted, patiently
from domain.model.saga import TERMINAL_STATUSES
from domain.model.saga import SagaStatus as DomainSagaStatus
from persistence.read.sagas import SagaReads
from persistence.read.timeline import TimelineReads

LiveTransitions = RecentTransitions[SagaUpdate]


def passes(info: Info) -> int:
    """The pacer's passes one message of this subscription costs: the values its selection may hold
    (api/graphql/edge/execution_limits.py), VALUES_PER_PASS to a pass, one at least."""
    raw = info._raw_info  # strawberry's Info gives no fragments
    size = operation_answer_size(raw.schema, raw.operation, raw.fragments, info.variable_values)
    return max(1, -(-size // VALUES_PER_PASS))


def live_transitions(timeline: TimelineReads, sagas: SagaReads) -> LiveTransitions:
    """The transitions this process's subscriptions send, each read and made once."""
    return RecentTransitions(timeline, sagas, SagaUpdate.of)


async def updates_of_saga(
    transitions: LiveTransitions,
    hub: TransitionHub,
    pacer: Pacer,
    saga_id: str,
    customer_id: str | None = None,
    cost: int = 1,
) -> AsyncGenerator[SagaUpdate, None]:
    """The saga's newest transition (its current state), then every later one in sequence order, up
    to and including a terminal status. With `customer_id`, another customer's saga is unknown."""
    unknown = client_error(f"no saga with id {saga_id}", ClientErrorCode.BAD_USER_INPUT, argument="sagaId")
    with hub.subscribe(saga_id) as notices:
        latest = await patiently(partial(transitions.timeline.latest_transition, saga_id))
        if latest is None:
            raise unknown
        sent = SagaUpdate.of(latest, await patiently(partial(transitions.saga_reads.saga, saga_id)))
        if customer_id is not None and sent.customer_id != customer_id:
            raise unknown
        yield sent
        while sent.status not in TERMINAL_STATUSES:
            (notice,) = await notices.next()  # one per saga, and this subscriber hears of one saga
            for update in (await transitions.past({saga_id: Wanted(sent.sequence, notice.last)}))[saga_id]:
                await pacer.turn(cost)
                sent = update
                yield sent


async def updates_of_all_sagas(
    tail: JournalTail[SagaUpdate],
    pacer: Pacer,
    after: int | None,
    statuses: Collection[DomainSagaStatus] | None,
    customer_id: str | None = None,
    cost: int = 1,
) -> AsyncGenerator[SagaUpdate, None]:
    """Every saga's transitions in journal order: those past position `after` first, then each as
    it commits (from now on when `after` is None), none missed, none twice; with `statuses`, only
    those after which the saga is in one of them; with `customer_id`, only that customer's sagas.
    It never completes."""
    async with aclosing(tail.follow(after, customer_id)) as batches:
        async for updates in batches:
            for update in updates:
                if statuses is None or update.status in statuses:
                    await pacer.turn(cost)
                    yield update


def refuse_over_http(context: ExecutionContext) -> None:
    """Answers a subscription sent over HTTP with an error saying where they are served: strawberry
    would otherwise run it as a query, which fails with a misleading error."""
    if context.operation_type is OperationType.SUBSCRIPTION and not isinstance(
        context.context["request"], WebSocket
    ):
        refusal = client_error(
            "subscriptions are served over WebSocket (graphql-transport-ws) at /graphql",
            ClientErrorCode.BAD_REQUEST,
        )
        context.result = ExecutionResult(data=None, errors=[refusal])


@strawberry.type(
    description="Live updates, served over WebSocket (graphql-transport-ws) at /graphql; sent over HTTP, "
    "a subscription is refused with BAD_REQUEST. A customer follows only its own sagas. The socket "
    "closes with 4403 when the caller's token expires."
)
class Subscription:
    @strawberry.subscription(
        description="The saga's current state (its newest transition), then every later transition in "
        "sequence order; completes after COMPLETED or FAILED. An unknown id is an error."
    )
    def saga_updates(
        self,
        info: Info,
        saga_id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="The saga to follow; unknown (or another customer's): BAD_USER_INPUT."
            ),
        ],
    ) -> AsyncGenerator[SagaUpdate, None]:
        svc = service(info)
        customer_id = customer_filter(principal(info), None)
        return updates_of_saga(svc.live, svc.hub, svc.pacer, str(saga_id), customer_id, passes(info))

    @strawberry.subscription(
        description="Every saga's transitions in journal (commit) order: with `after`, first every one "
        "past that cursor, then each as it commits; without, those committed from now on. None is "
        "missed or sent twice, so a client that kept the last `cursor` it received resumes with "
        "`after` where it left off. With `status`, only those after which the saga has one of these "
        "statuses. Never completes."
    )
    async def saga_feed(
        self,
        info: Info,
        status: Annotated[
            list[SagaStatus] | None,  # type: ignore[valid-type]
            strawberry.argument(
                description="Only transitions after which the saga has one of these statuses."
            ),
        ] = None,
        after: Annotated[
            str | None,
            strawberry.argument(
                description="The `cursor` of the last transition received (from this feed, "
                "`sagaUpdates`, `Saga.events` or `journalEvents`); one of no event the caller may see is "
                "refused with BAD_USER_INPUT."
            ),
        ] = None,
    ) -> AsyncGenerator[SagaUpdate, None]:
        svc, customer_id = service(info), customer_filter(principal(info), None)
        statuses = None if status is None else {DomainSagaStatus(s) for s in status}
        position = await journal_position(info, after)
        updates = updates_of_all_sagas(svc.tail, svc.pacer, position, statuses, customer_id, passes(info))
        async with aclosing(updates):
            async for update in updates:
                yield update
