"""Retrying or aborting many sagas in one call, for the console's bulk actions and for scripts.

Each saga gets the single-saga intervention (`retrySaga`, `abortSaga`): its own decision, journaled in
its own transaction, one saga after the other. A call cut off midway (a lost connection, a server
killed) thus leaves every saga either handled or untouched, never half-handled, and the same call sent
again handles the rest: a saga it already handled answers ALREADY, with the code that says why.

A call takes at most MAX_BULK_SAGAS ids; a larger selection goes in several calls. The sagas that
match a filter are the ids of the `sagas` connection with that filter, read page by page.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import strawberry
from strawberry.types import Info

from api.graphql.enums import ErrorCode
from api.graphql.interventions import actor_of
from api.graphql.types import Input, Saga, UserError, as_committed, principal, service, user_errors
from domain.model.interventions import Refused
from domain.model.problems import MAX_TEXT, Problem, ProblemCode, check_text
from domain.model.saga import SagaState

MAX_BULK_SAGAS = 100

# Refusals that mean the saga wants nothing more of the action: not (or no longer) parked, for a
# retry; already turning back or finished, for an abort.
_ALREADY = frozenset(
    {ProblemCode.SAGA_NOT_PARKED, ProblemCode.SAGA_ALREADY_COMPENSATING, ProblemCode.SAGA_FINISHED}
)


@strawberry.enum(description="What a bulk action did to one saga.")
class BulkOutcome(enum.Enum):
    DONE = strawberry.enum_value("DONE", description="The action was taken; `saga` is the saga after it.")
    ALREADY = strawberry.enum_value(
        "ALREADY",
        description="Nothing to do: the saga is not, or no longer, where the action applies (`code` "
        "says why); what a saga handled by an earlier call answers when the call is sent again.",
    )
    REFUSED = strawberry.enum_value("REFUSED", description="No such saga (`code` UNKNOWN_SAGA).")


@strawberry.type(description="One saga's result in a bulk action.")
class SagaActionResult:
    saga_id: strawberry.ID = strawberry.field(description="The saga, as its id was sent.")
    outcome: BulkOutcome = strawberry.field(description="What the action did to it.")
    code: ErrorCode | None = strawberry.field(  # type: ignore[valid-type]
        default=None, description="Why nothing was done (ALREADY, REFUSED); null when DONE."
    )
    message: str | None = strawberry.field(
        default=None, description="Why nothing was done, for people; null when DONE."
    )
    saga: Saga | None = strawberry.field(default=None, description="The saga after the action, when DONE.")


@strawberry.type(
    description="One result per distinct saga id, in the order sent, or why the call was refused."
)
class BulkInterventionPayload:
    results: list[SagaActionResult] = strawberry.field(
        default_factory=list, description="One per distinct saga id, in the order sent; empty when refused."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="The call refused as a whole (no saga touched)."
    )


@strawberry.input(description="The sagas to retry.")
class RetrySagasInput:
    saga_ids: list[strawberry.ID] = strawberry.field(
        description=f"1 to {MAX_BULK_SAGAS} saga ids (repeats count once)."
    )


@strawberry.input(description="The sagas to abort, and why.")
class AbortSagasInput:
    saga_ids: list[strawberry.ID] = strawberry.field(
        description=f"1 to {MAX_BULK_SAGAS} saga ids (repeats count once)."
    )
    reason: str = strawberry.field(description="Why; each saga's failureReason once it is compensated.")


def _result(saga_id: str, answer: SagaState | Refused) -> SagaActionResult:
    if isinstance(answer, Refused):
        outcome = BulkOutcome.ALREADY if answer.code in _ALREADY else BulkOutcome.REFUSED
        return SagaActionResult(
            saga_id=strawberry.ID(saga_id), outcome=outcome, code=answer.code, message=answer.message
        )
    return SagaActionResult(
        saga_id=strawberry.ID(saga_id), outcome=BulkOutcome.DONE, saga=as_committed(answer)[0]
    )


async def _each(
    saga_ids: list[strawberry.ID],
    problems: list[Problem],
    act: Callable[[str], Awaitable[SagaState | Refused]],
) -> BulkInterventionPayload:
    """`act` on each distinct id, one after the other, unless the call is refused."""
    distinct = list(dict.fromkeys(str(saga_id) for saga_id in saga_ids))
    if not distinct:
        problems = [
            Problem(ProblemCode.REQUIRED, "sagaIds", "sagaIds must name at least one saga"),
            *problems,
        ]
    elif len(distinct) > MAX_BULK_SAGAS:
        too_many = (
            f"at most {MAX_BULK_SAGAS} sagas a call, got {len(distinct)}: send the rest in another call"
        )
        problems = [Problem(ProblemCode.OUT_OF_RANGE, "sagaIds", too_many), *problems]
    if problems:
        return BulkInterventionPayload(user_errors=user_errors(problems))
    return BulkInterventionPayload(results=[_result(saga_id, await act(saga_id)) for saga_id in distinct])


@strawberry.type
class BulkMutations:
    @strawberry.mutation(
        description=f"retrySaga for each of up to {MAX_BULK_SAGAS} sagas, one after the other, each "
        "recorded on its own: a result per saga (DONE, or ALREADY when it is not parked)."
    )
    async def retry_sagas(self, info: Info, input: Input[RetrySagasInput]) -> BulkInterventionPayload:
        svc, actor = service(info), actor_of(principal(info))
        return await _each(input.saga_ids, [], lambda saga_id: svc.orchestrator.retry(saga_id, actor))

    @strawberry.mutation(
        description=f"abortSaga for each of up to {MAX_BULK_SAGAS} sagas, with one reason, one after "
        "the other, each recorded on its own: a result per saga (DONE, or ALREADY when it is already "
        "compensating or finished)."
    )
    async def abort_sagas(self, info: Info, input: Input[AbortSagasInput]) -> BulkInterventionPayload:
        svc, actor = service(info), actor_of(principal(info))
        return await _each(
            input.saga_ids,
            check_text(input.reason, "reason", MAX_TEXT),
            lambda saga_id: svc.orchestrator.abort(saga_id, input.reason, actor),
        )
