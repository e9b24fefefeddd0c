"""What operators and customers may ask of a saga from outside its own course, decided purely.

Each decision takes the saga's state and answers the events to journal, or why the request is refused.
The events go into the journal like any other, so a saga's history says who intervened, and when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.model.problems import ProblemCode
from domain.model.saga import (
    CUSTOMER_CANCELLED,
    CustomerCancelled,
    SagaAborted,
    SagaEvent,
    SagaRetried,
    SagaState,
    SagaStatus,
    ShipmentRouted,
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who steps in, as the journal records it: the subject of their token, and the role they act in
    ("customer", "operator" or "admin"), which is all a customer is shown of staff."""

    subject: str
    role: str


@dataclass(frozen=True, slots=True)
class Refused:
    code: ProblemCode
    message: str


Decision = tuple[SagaEvent, ...] | Refused


def retry(
    state: SagaState, now: datetime, actor: Actor, services: Mapping[str, str | None] | None = None
) -> Decision:
    """An operator sends a parked saga on, once whatever made it fail is mended.

    `services`: to reroute, each warehouse's service URL as the catalog names it now, by warehouse
    code; every shipment a remote warehouse may hold (requested or created) is then routed to its
    warehouse's, so its commands go there from now on: the mend for a warehouse that moved to a new
    service, taking its shipments along (decision 0023). Refused with NO_WAREHOUSE_SERVICE when such
    a shipment's warehouse has no service any more, since the built-in warehouse does not hold it.
    None: every shipment keeps its route."""
    if state.status is not SagaStatus.NEEDS_ATTENTION:
        return Refused(
            ProblemCode.SAGA_NOT_PARKED,
            f"saga {state.saga_id} is {state.status.value}; only a saga that needs attention is retried",
        )
    routes: list[SagaEvent] = []
    for s in state.shipments:
        if services is None or not s.is_remote or not s.may_be_held:
            continue
        url = services.get(s.warehouse_code)
        if url is None:
            return Refused(
                ProblemCode.NO_WAREHOUSE_SERVICE,
                f"warehouse {s.warehouse_code} has no service now; its shipment {s.shipment_id} "
                "cannot go to the built-in warehouse",
            )
        if url != s.service_url:
            routes.append(ShipmentRouted(s.shipment_id, url, now))
    return (*routes, SagaRetried(now, actor.subject, actor.role))


def abort(state: SagaState, reason: str, now: datetime, actor: Actor) -> Decision:
    """An operator turns a running or parked saga back now: what was done is compensated."""
    if state.is_terminal:
        return Refused(ProblemCode.SAGA_FINISHED, f"saga {state.saga_id} is already {state.status.value}")
    if state.is_compensating:
        return Refused(
            ProblemCode.SAGA_ALREADY_COMPENSATING,
            f"saga {state.saga_id} is already compensating; a parked compensation is retried instead",
        )
    return (SagaAborted(reason, now, actor.subject, actor.role),)


def cancel_order(state: SagaState, now: datetime, actor: Actor) -> Decision:
    """The customer (or an operator for it, `actor`) cancels the order. That is possible until any of
    its shipments is dispatched: a completed saga then compensates too, cancelling its shipments
    first. Once one has left a warehouse the order is refused as shipped, even while others wait,
    since goods are on their way (decision 0022). A dispatch and a cancellation are ordered by the
    journal, and whichever is recorded first wins."""
    if state.any_dispatched:
        shipped = "shipped" if state.is_dispatched else "partially shipped"
        return Refused(ProblemCode.ORDER_ALREADY_SHIPPED, f"order {state.order_id} has been {shipped}")
    if state.status is SagaStatus.FAILED:
        return Refused(ProblemCode.ORDER_ALREADY_CANCELLED, f"order {state.order_id} is already cancelled")
    if state.is_compensating:
        return Refused(
            ProblemCode.ORDER_ALREADY_CANCELLED, f"order {state.order_id} is already being cancelled"
        )
    return (CustomerCancelled(now, CUSTOMER_CANCELLED, actor.subject, actor.role),)
