"""Orders and their sagas: placing an order, and reading orders and sagas back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from api.access.rules import may_act_for
from api.graphql.types import (
    Input,
    Order,
    Saga,
    UserError,
    as_committed,
    principal,
    service,
    user_errors,
    user_errors_field,
)
from domain.model.commands import OrderPlaced, PlaceOrder
from domain.model.problems import (
    MAX_CODE,
    MAX_LINES,
    MAX_QUANTITY,
    MAX_TEXT,
    Problem,
    ProblemCode,
    check_quantity,
    check_text,
)
from domain.model.saga import SETTLED_STATUSES, SagaState, SagaStatus
from domain.model.values import OrderLine as DomainOrderLine
from domain.ports import IdempotencyKeyReused

if TYPE_CHECKING:
    from api.access.auth import Principal
    from api.service import Service

log = logging.getLogger("ordersaga.api")


@strawberry.input(description="One line of an order: a quantity of one product.")
class OrderLineInput:
    sku: str = strawberry.field(
        description=f"The product's SKU (UNKNOWN_SKU if none), at most {MAX_CODE} characters."
    )
    quantity: int = strawberry.field(description=f"Units, 1 to {MAX_QUANTITY} (INVALID_QUANTITY).")


@strawberry.input(description="An order to place.")
class PlaceOrderInput:
    customer_id: str | None = strawberry.field(
        default=None, description="Whose order; omitted, the caller's own (its token's subject)."
    )
    lines: list[OrderLineInput] = strawberry.field(
        description=f"What to order, 1 to {MAX_LINES} lines (NO_LINES, TOO_MANY_LINES)."
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Repeat a request with the same key to get the same order, never a second one. "
        "Keys are the caller's own: another caller's same key is another key.",
    )
    await_outcome_ms: int = strawberry.field(
        default=0,
        description=(
            "Wait up to this many milliseconds (at most 30000) for the saga to finish, or to need an "
            "operator, and answer with that; 0 answers as soon as the order is placed. The wait starts "
            "once the order is placed, which may itself first wait for a busy database."
        ),
    )


@strawberry.type(description="The order placed and its saga, or why the order was refused.")
class PlaceOrderPayload:
    order: Order | None = strawberry.field(
        default=None,
        description="The order (the first one, for a repeated idempotencyKey); null when refused.",
    )
    saga: Saga | None = strawberry.field(
        default=None,
        description="Its saga: as placed, or with awaitOutcomeMs as it stands when answered (settled, or "
        "when the wait ran out); null when refused.",
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type
class OrderQueries:
    @strawberry.field(
        description="The saga with this id, or null when there is none or it is another customer's."
    )
    async def saga(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The saga's id.")]
    ) -> Saga | None:
        row = await service(info).read.saga(str(id))
        return Saga.from_row(row) if row and may_act_for(principal(info), row.customer_id) else None

    @strawberry.field(
        description="The order with this id, or null when there is none or it is another customer's."
    )
    async def order(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The order's id.")]
    ) -> Order | None:
        row = await service(info).read.order(str(id))
        return Order.from_row(row) if row and may_act_for(principal(info), row.customer_id) else None


@strawberry.type
class OrderMutations:
    @strawberry.mutation(
        description="Place an order; its saga runs on in the background (or, with awaitOutcomeMs, until it "
        "settles). On the embedded database (SQLite) the placement makes the saga's steps too, so the saga "
        "is usually settled when answered. Refusals, in userErrors: REQUIRED, TOO_LONG, INVALID_TEXT, "
        "NO_LINES, TOO_MANY_LINES, INVALID_QUANTITY, UNKNOWN_SKU, OUT_OF_RANGE, FORBIDDEN (a customer "
        "ordering in another's name), IDEMPOTENCY_KEY_REUSED."
    )
    async def place_order(self, info: Info, input: Input[PlaceOrderInput]) -> PlaceOrderPayload:
        svc, caller = service(info), principal(info)
        customer_id = caller.subject if input.customer_id is None else input.customer_id
        problems = _check_order(input, customer_id)
        if not problems and not may_act_for(caller, customer_id):
            message = "an order can be placed only in the caller's own name"
            problems.append(Problem(ProblemCode.FORBIDDEN, "customerId", message))
        skus = [line.sku for line in input.lines[:MAX_LINES]]
        known = await svc.catalog.known_skus(skus)
        problems += [
            Problem(ProblemCode.UNKNOWN_SKU, f"lines[{i}].sku", f"no product {sku}")
            for i, sku in enumerate(skus)
            if sku and len(sku) <= MAX_CODE and sku not in known
        ]
        if problems:
            return PlaceOrderPayload(user_errors=user_errors(problems))
        command = PlaceOrder(
            customer_id=customer_id,
            lines=tuple(DomainOrderLine(x.sku, x.quantity) for x in input.lines),
            idempotency_key=None if input.idempotency_key is None else own_key(caller, input.idempotency_key),
            # Found for this customer only, which the caller was just found entitled to act for.
            unscoped_key=input.idempotency_key,
        )
        try:
            placed = await svc.orchestrator.place_order(command)
        except IdempotencyKeyReused:
            problem = Problem(
                ProblemCode.IDEMPOTENCY_KEY_REUSED,
                "idempotencyKey",
                "this idempotency key was already used for a different order",
            )
            return PlaceOrderPayload(user_errors=user_errors([problem]))
        state = placed.state
        if input.await_outcome_ms:
            state = await _outcome(svc, placed, timedelta(milliseconds=input.await_outcome_ms))
        if state is not None:
            saga, order = as_committed(state)
            return PlaceOrderPayload(order=order, saga=saga)
        # A replayed placement, or one still on its way: answer the order as it stands now.
        try:
            order_row, saga_row = await svc.read.order(placed.order_id), await svc.read.saga(placed.saga_id)
            if order_row is None or saga_row is None:
                raise RuntimeError(f"order {placed.order_id} was placed but cannot be read back")
        except Exception:
            if placed.state is None:
                raise  # a replay placed nothing now: "busy, send it again" is true of it
            # Placed now, so any error would be false ("busy, nothing was done", or an internal error
            # a client sends again), and sent again without a key it would place a second order: the
            # order is answered as the placement committed it.
            log.warning("order %s answered as placed: reading it back failed", placed.order_id, exc_info=True)
            saga, order = as_committed(placed.state)
            return PlaceOrderPayload(order=order, saga=saga)
        return PlaceOrderPayload(order=Order.from_row(order_row), saga=Saga.from_row(saga_row))


async def _outcome(svc: Service, placed: OrderPlaced, within: timedelta) -> SagaState | None:
    """The saga once it settles, if it does within `within`; None to answer it as it stands."""
    if placed.state is not None and placed.state.is_settled:
        return placed.state  # settled by the placement's own transaction (decision 0004)
    watcher = svc.orchestrator.watch(placed.saga_id)  # before anything is awaited: none can slip by
    try:
        if placed.state is None:  # a replayed placement, which may have settled long ago
            row = await svc.read.saga(placed.saga_id)
            if row is None or SagaStatus(row.status) in SETTLED_STATUSES:
                return None
        # Cancelled when the wait times out, which is all a watcher needs: it is unwatched below.
        # (Not asyncio.wait_for, which on Python 3.11 may drop the request's own cancellation.)
        async with asyncio.timeout(within.total_seconds()):
            return await watcher
    except TimeoutError:
        # The outcome may have come in the same turn of the loop as the deadline.
        return watcher.result() if watcher.done() and not watcher.cancelled() else None
    finally:
        svc.orchestrator.unwatch(placed.saga_id, watcher)


MAX_AWAIT_MS = 30_000


def own_key(caller: Principal, idempotency_key: str) -> str:
    """The key under which a placement is bound: the client's key within the caller's own space (as
    Stripe scopes keys to an account), so one caller's key can never replay another's order. A
    digest, so that any subject and key fit the column and no two pairs run together."""
    pair = json.dumps([caller.subject, idempotency_key])
    return hashlib.sha256(pair.encode()).hexdigest()


def _check_order(order: PlaceOrderInput, customer_id: str) -> list[Problem]:
    problems = check_text(customer_id, "customerId", MAX_TEXT)
    if not 0 <= order.await_outcome_ms <= MAX_AWAIT_MS:
        message = f"awaitOutcomeMs must be between 0 and {MAX_AWAIT_MS}"
        problems.append(Problem(ProblemCode.OUT_OF_RANGE, "awaitOutcomeMs", message))
    if order.idempotency_key is not None:
        problems += check_text(order.idempotency_key, "idempotencyKey", MAX_TEXT)
    if not order.lines:
        problems.append(Problem(ProblemCode.NO_LINES, "lines", "an order needs at least one line"))
    if len(order.lines) > MAX_LINES:
        problems.append(
            Problem(ProblemCode.TOO_MANY_LINES, "lines", f"an order has at most {MAX_LINES} lines")
        )
    for i, line in enumerate(order.lines[:MAX_LINES]):
        problems += check_text(line.sku, f"lines[{i}].sku", MAX_CODE)
        problems += check_quantity(line.quantity, f"lines[{i}].quantity")
    return problems
