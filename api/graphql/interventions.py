"""Stepping into a saga from outside its own course: the customer's cancellation, an operator's retry
and abort, and the sagas waiting for an operator. Each change is recorded in the saga's journal."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from api.access.auth import Principal
from api.access.rules import acting_role, may_act_for, speaks_for
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.idempotency import KEY_DESCRIPTION, KEY_REUSED, check_key, keyed
from api.graphql.loaders import loaders
from api.graphql.types import (
    Input,
    Order,
    Saga,
    Shipment,
    UserError,
    as_committed,
    principal,
    service,
    shipment_as_committed,
    user_errors,
    user_errors_field,
)
from domain.model.interventions import Actor, Refused
from domain.model.problems import MAX_TEXT, Problem, ProblemCode, check_text
from domain.model.saga import Rejected, SagaState, Succeeded
from domain.model.shipment import created_by
from domain.ports import IdempotencyKeyReused

if TYPE_CHECKING:
    from api.service import Service

MAX_ATTENTION_LIMIT = 200


@strawberry.input(description="The saga to retry.")
class RetrySagaInput:
    saga_id: strawberry.ID = strawberry.field(
        description="A saga that NEEDS_ATTENTION (SAGA_NOT_PARKED otherwise)."
    )
    reroute: bool = strawberry.field(
        default=False,
        description="Send the shipments a remote warehouse may hold (requested or created) to their "
        "warehouse's serviceUrl as the catalog has it now, not the service their first command went "
        "to: for a warehouse that moved to a new service, taking its shipments along. "
        "NO_WAREHOUSE_SERVICE when such a warehouse has no service now.",
    )


@strawberry.input(description="The saga to abort, and why.")
class AbortSagaInput:
    saga_id: strawberry.ID = strawberry.field(
        description="A running or parked saga (SAGA_FINISHED, SAGA_ALREADY_COMPENSATING otherwise)."
    )
    reason: str = strawberry.field(description="Why; the saga's failureReason once it is compensated.")


@strawberry.input(description="The order to cancel.")
class CancelOrderInput:
    order_id: strawberry.ID = strawberry.field(
        description="The order; another customer's is unknown to a customer (UNKNOWN_ORDER)."
    )


@strawberry.input(description="The shipment the warehouse sent.")
class DispatchShipmentInput:
    shipment_id: strawberry.ID = strawberry.field(description="The shipment (UNKNOWN_SHIPMENT if none).")
    idempotency_key: str | None = strawberry.field(default=None, description=KEY_DESCRIPTION)


@strawberry.type(description="The shipment and its order once dispatched, or why it was refused.")
class DispatchShipmentPayload:
    shipment: Shipment | None = strawberry.field(
        default=None, description="The shipment, DISPATCHED; null when refused."
    )
    order: Order | None = strawberry.field(
        default=None,
        description="Its order: SHIPPED if this was the last of its shipments to leave, PARTIALLY_SHIPPED "
        "while others wait; null when refused, and for a warehouse service, which is shown the shipment "
        "only.",
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.enum(description="What a remote warehouse did with a shipment's command it accepted.")
class ShipmentOutcome(enum.Enum):
    CREATED = strawberry.enum_value("CREATED", description="It holds the shipment, to be picked and sent.")
    REJECTED = strawberry.enum_value("REJECTED", description="It refused it; the order is then cancelled.")


@strawberry.input(description="A remote warehouse's answer to a CreateShipment command it accepted (202).")
class ReportShipmentOutcomeInput:
    command_id: str = strawberry.field(
        description="The command's commandId, as it was sent (UNKNOWN_COMMAND if no CreateShipment command "
        "of this service has it)."
    )
    outcome: ShipmentOutcome = strawberry.field(description="What the warehouse did.")
    reference: str | None = strawberry.field(
        default=None, description=f"What the warehouse calls the shipment, at most {MAX_TEXT} characters."
    )
    reason: str | None = strawberry.field(
        default=None, description=f"Why it refused, at most {MAX_TEXT} characters; required for REJECTED."
    )


@strawberry.type(description="The shipment and its order after the report, or why it was refused.")
class ReportShipmentOutcomePayload:
    shipment: Shipment | None = strawberry.field(
        default=None, description="The shipment as the report left it; null when refused."
    )
    order: Order | None = strawberry.field(
        default=None, description="Its order; null when refused, and for a warehouse service's token."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type(description="The saga and its order after an intervention, or why it was refused.")
class InterventionPayload:
    saga: Saga | None = strawberry.field(
        default=None, description="The saga as the intervention left it; null when refused."
    )
    order: Order | None = strawberry.field(
        default=None, description="Its order, likewise; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()

    @classmethod
    def refused(cls, problem: Problem) -> InterventionPayload:
        return cls(user_errors=user_errors([problem]))


def actor_of(caller: Principal) -> Actor:
    """The caller as the journal records an intervention of theirs."""
    return Actor(caller.subject, acting_role(caller).value)


def _order_shown(info: Info, state: SagaState) -> Order | None:
    """The saga's order as committed, for a caller who may see it: a warehouse service acting on a
    shipment is shown the shipment, not the customer's order."""
    return as_committed(state)[1] if may_act_for(principal(info), state.customer_id) else None


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
    async def sagas_needing_attention(
        self,
        info: Info,
        limit: Annotated[
            int,
            strawberry.argument(
                description=f"At most this many, 1 to {MAX_ATTENTION_LIMIT} (BAD_USER_INPUT otherwise)."
            ),
        ] = 50,
    ) -> list[Saga]:
        if not 1 <= limit <= MAX_ATTENTION_LIMIT:
            raise client_error(
                f"limit must be between 1 and {MAX_ATTENTION_LIMIT}",
                ClientErrorCode.BAD_USER_INPUT,
                argument="limit",
            )
        return [Saga.from_row(r) for r in await service(info).worklist.sagas_needing_attention(limit)]


@strawberry.type
class OperationMutations:
    @strawberry.mutation(
        description="Cancel an order none of whose shipments has been dispatched: its saga compensates "
        "what was done (a completed saga's shipments are cancelled first). ORDER_ALREADY_SHIPPED once "
        "one is dispatched, ORDER_ALREADY_CANCELLED when cancelled or being cancelled, UNKNOWN_ORDER for "
        "no order (or another customer's), all in userErrors."
    )
    async def cancel_order(self, info: Info, input: Input[CancelOrderInput]) -> InterventionPayload:
        svc, caller = service(info), principal(info)
        order = await svc.read.order(str(input.order_id))
        # Another customer's order is answered as unknown, so that ids tell nothing.
        if order is None or not may_act_for(caller, order.customer_id):
            return InterventionPayload.refused(
                Problem(ProblemCode.UNKNOWN_ORDER, "orderId", f"no order {input.order_id}")
            )
        cancelled = await svc.orchestrator.cancel_order(order.saga_id, actor_of(caller))
        return await _answer(svc, cancelled, "orderId")

    @strawberry.mutation(
        description="Send a saga that needs attention on: the step it was parked at is tried afresh. "
        "Refusals, in userErrors: UNKNOWN_SAGA, SAGA_NOT_PARKED, NO_WAREHOUSE_SERVICE."
    )
    async def retry_saga(self, info: Info, input: Input[RetrySagaInput]) -> InterventionPayload:
        svc = service(info)
        retried = await svc.orchestrator.retry(str(input.saga_id), actor_of(principal(info)), input.reroute)
        return await _answer(svc, retried, "sagaId")

    @strawberry.mutation(
        description="Turn a running or parked saga back now, whatever step is in flight: what was done "
        "is compensated, and the saga fails with the reason given. Refusals, in userErrors: REQUIRED, "
        "TOO_LONG, INVALID_TEXT, UNKNOWN_SAGA, SAGA_FINISHED, SAGA_ALREADY_COMPENSATING."
    )
    async def abort_saga(self, info: Info, input: Input[AbortSagaInput]) -> InterventionPayload:
        svc = service(info)
        problems = check_text(input.reason, "reason", MAX_TEXT)
        if problems:
            return InterventionPayload(user_errors=user_errors(problems))
        aborted = await svc.orchestrator.abort(str(input.saga_id), input.reason, actor_of(principal(info)))
        return await _answer(svc, aborted, "sagaId")

    @strawberry.mutation(
        description="A remote warehouse reports the outcome of a CreateShipment command it accepted "
        "earlier (it answered 202): CREATED, and the saga completes once every shipment of the order "
        "exists; REJECTED, and the saga cancels the other shipments, releases the stock and cancels the "
        "order. The same report again changes nothing and answers the shipment as it is. Refused in "
        "userErrors: UNKNOWN_COMMAND, OUTCOME_NOT_AWAITED (the step timed out, the saga turned back, or "
        "the other outcome was reported first), REQUIRED (a REJECTED without a reason), TOO_LONG, "
        "INVALID_TEXT."
    )
    async def report_shipment_outcome(
        self, info: Info, input: Input[ReportShipmentOutcomeInput]
    ) -> ReportShipmentOutcomePayload:
        problems = check_text(input.command_id, "commandId", 3 * MAX_TEXT)
        for field, text in (("reference", input.reference), ("reason", input.reason)):
            if text is not None:
                problems += check_text(text, field, MAX_TEXT)
        if input.outcome is ShipmentOutcome.REJECTED and input.reason is None:
            problems.append(Problem(ProblemCode.REQUIRED, "reason", "a REJECTED outcome says why"))
        named = None if problems else created_by(input.command_id)
        if named is None or not speaks_for(principal(info), named[2]):
            # Another warehouse's command is answered as unknown, so that ids tell nothing.
            unknown = Problem(
                ProblemCode.UNKNOWN_COMMAND, "commandId", "no CreateShipment command has that id"
            )
            return ReportShipmentOutcomePayload(user_errors=user_errors(problems or [unknown]))
        saga_id, shipment_id, _ = named
        outcome = (
            Succeeded(reference=input.reference)
            if input.outcome is ShipmentOutcome.CREATED
            else Rejected(input.reason or "")
        )
        result = await service(info).orchestrator.report_shipment_outcome(saga_id, shipment_id, outcome)
        if isinstance(result, Refused):
            code = ProblemCode.UNKNOWN_COMMAND if result.code is ProblemCode.UNKNOWN_SAGA else result.code
            return ReportShipmentOutcomePayload(
                user_errors=user_errors([Problem(code, "commandId", result.message)])
            )
        return ReportShipmentOutcomePayload(
            shipment=shipment_as_committed(result, shipment_id), order=_order_shown(info, result)
        )

    @strawberry.mutation(
        description="Record that a warehouse picked and sent its shipment, in one transaction: its picks "
        "leave their sections (onHand and reserved go down, available stays), the shipment becomes "
        "DISPATCHED and its order SHIPPED once all its shipments are, PARTIALLY_SHIPPED until then. "
        "Refused once dispatched (SHIPMENT_ALREADY_DISPATCHED), for a cancelled order "
        "(ORDER_ALREADY_CANCELLED), before the order's saga completed (SHIPMENT_NOT_READY), for an "
        "unknown id (UNKNOWN_SHIPMENT) and for a key used for another "
        "request (IDEMPOTENCY_KEY_REUSED), in userErrors."
    )
    async def dispatch_shipment(
        self, info: Info, input: Input[DispatchShipmentInput]
    ) -> DispatchShipmentPayload:
        svc = service(info)
        shipment_id = str(input.shipment_id)
        problems = check_text(shipment_id, "shipmentId", MAX_TEXT) + check_key(input.idempotency_key)
        row = None if problems else await loaders(info).shipments_by_id.load(shipment_id)
        if row is None or not speaks_for(principal(info), row.warehouse_code):
            unknown = Problem(ProblemCode.UNKNOWN_SHIPMENT, "shipmentId", f"no shipment {shipment_id}")
            return DispatchShipmentPayload(user_errors=user_errors(problems or [unknown]))
        request = keyed(info, input.idempotency_key, "dispatchShipment", shipmentId=shipment_id)
        # Its picks' stock rows are locked in SKU order, as the reservations lock theirs.
        first_sku = min((pick["sku"] for pick in row.picks), default="")
        try:
            result = await svc.orchestrator.dispatch_shipment(row.saga_id, shipment_id, request, first_sku)
        except IdempotencyKeyReused:
            return DispatchShipmentPayload(user_errors=user_errors([KEY_REUSED]))
        if isinstance(result, Refused):
            return DispatchShipmentPayload(
                user_errors=user_errors([Problem(result.code, "shipmentId", result.message)])
            )
        return DispatchShipmentPayload(
            shipment=shipment_as_committed(result, shipment_id), order=_order_shown(info, result)
        )
