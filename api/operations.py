"""Stepping into a saga from outside its own course: the customer's cancellation, an operator's retry
and abort, and the sagas waiting for an operator. Each change is recorded in the saga's journal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry
from strawberry.types import Info

from api.errors import ClientErrorCode, client_error
from api.rules import may_act_for
from api.types import Order, Saga, UserError, as_committed, principal, service, user_errors
from domain.interventions import Refused
from domain.problems import MAX_TEXT, Problem, ProblemCode, check_text
from domain.saga import SagaState

if TYPE_CHECKING:
    from api.service import Service

MAX_ATTENTION_LIMIT = 200


@strawberry.input
class RetrySagaInput:
    saga_id: strawberry.ID


@strawberry.input
class AbortSagaInput:
    saga_id: strawberry.ID
    reason: str = strawberry.field(description="Why; the saga's failureReason once it is compensated.")


@strawberry.input
class CancelOrderInput:
    order_id: strawberry.ID


@strawberry.type(description="The saga and its order after an intervention, or why it was refused.")
class InterventionPayload:
    saga: Saga | None = None
    order: Order | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, problem: Problem) -> InterventionPayload:
        return cls(user_errors=user_errors([problem]))


async def _answer(svc: Service, result: SagaState | Refused, field: str) -> InterventionPayload:
    if isinstance(result, Refused):
        return InterventionPayload.refused(Problem(result.code, field, result.message))
    saga, order = as_committed(result)
    return InterventionPayload(saga=saga, order=order)


@strawberry.type
class OperationQueries:
    @strawberry.field(
        description="Sagas parked for an operator (a compensation or shipment that failed after all its "
        "retries), the longest waiting first; failureReason says why each needs attention."
    )
    async def sagas_needing_attention(self, info: Info, limit: int = 50) -> list[Saga]:
        if not 1 <= limit <= MAX_ATTENTION_LIMIT:
            raise client_error(
                f"limit must be between 1 and {MAX_ATTENTION_LIMIT}",
                ClientErrorCode.BAD_USER_INPUT,
                argument="limit",
            )
        return [Saga.from_row(r) for r in await service(info).read.sagas_needing_attention(limit)]


@strawberry.type
class OperationMutations:
    @strawberry.mutation(
        description="Cancel an order that has not been shipped: its saga compensates what was done."
    )
    async def cancel_order(self, info: Info, input: CancelOrderInput) -> InterventionPayload:
        svc, caller = service(info), principal(info)
        order = await svc.read.order(str(input.order_id))
        # Another customer's order is answered as unknown, so that ids tell nothing.
        if order is None or not may_act_for(caller, order.customer_id):
            return InterventionPayload.refused(
                Problem(ProblemCode.UNKNOWN_ORDER, "orderId", f"no order {input.order_id}")
            )
        cancelled = await svc.orchestrator.cancel_order(order.saga_id, caller.subject)
        return await _answer(svc, cancelled, "orderId")

    @strawberry.mutation(
        description="Send a saga that needs attention on: the step it was parked at is tried afresh."
    )
    async def retry_saga(self, info: Info, input: RetrySagaInput) -> InterventionPayload:
        svc = service(info)
        retried = await svc.orchestrator.retry(str(input.saga_id), principal(info).subject)
        return await _answer(svc, retried, "sagaId")

    @strawberry.mutation(
        description="Turn a running or parked saga back now, whatever step is in flight: what was done "
        "is compensated, and the saga fails with the reason given."
    )
    async def abort_saga(self, info: Info, input: AbortSagaInput) -> InterventionPayload:
        svc = service(info)
        problems = check_text(input.reason, "reason", MAX_TEXT)
        if problems:
            return InterventionPayload(user_errors=user_errors(problems))
        aborted = await svc.orchestrator.abort(str(input.saga_id), input.reason, principal(info).subject)
        return await _answer(svc, aborted, "sagaId")
