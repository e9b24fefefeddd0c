"""GraphQL enums: the domain's own, each value described here so that domain/ stays free of GraphQL,
and the status of a shipment at its warehouse."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

import strawberry

from domain.model.problems import ProblemCode as DomainProblemCode
from domain.model.saga import FailureKind as DomainFailureKind
from domain.model.saga import SagaStatus as DomainSagaStatus
from domain.model.saga import Step, StepStatus
from domain.model.values import MovementKind as DomainMovementKind
from domain.model.values import OrderStatus as DomainOrderStatus
from domain.model.values import StorageCondition as DomainStorageCondition

E = TypeVar("E", bound=enum.Enum)


def described(domain: type[E], name: str, description: str, values: Mapping[str, str]) -> type[E]:
    """The domain enum `domain` as the GraphQL enum `name`, each value with its description in
    `values` (keyed by name), so that domain/ stays free of GraphQL. A value missing from `values`
    raises KeyError when the module is imported."""
    wrapped = strawberry.enum(domain, name=name, description=description)
    for value in wrapped.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = values[value.name]
    return wrapped


SagaStatus = described(
    DomainSagaStatus,
    "SagaStatus",
    "Where an order saga is. It runs CREATE_ORDER, RESERVE_STOCK, CONFIRM_ORDER and CREATE_SHIPMENT "
    "in turn, and when one fails (or an operator aborts, or the customer cancels) it compensates in "
    "reverse.",
    {
        "ORDER_CREATED": "The order is recorded (PENDING); its stock is reserved next.",
        "STOCK_RESERVING": "Stock is being reserved in the sections that can hold the products.",
        "STOCK_RESERVED": "Every line's stock is held reserved; the order is confirmed next.",
        "ORDER_CONFIRMING": "The order is being confirmed.",
        "ORDER_CONFIRMED": "The order is confirmed; its shipment instruction is created next.",
        "SHIPMENT_CREATING": "The shipment instruction is being created.",
        "COMPLETED": "Every step succeeded: the order is confirmed and its shipment waits to be "
        "dispatched. A cancellation before the dispatch still turns it back.",
        "STOCK_RESERVATION_FAILED": "Too little stock to reserve; compensation follows.",
        "COMPENSATING": "A step failed, or the saga was aborted or cancelled: what was done is being "
        "undone, in reverse order.",
        "FAILED": "Compensated and finished: the order is CANCELLED and its stock released; "
        "failureReason says why.",
        "NEEDS_ATTENTION": "A compensation (or the shipment, past the point of no return) failed on every "
        "attempt: parked until an operator retries it (retrySaga) or aborts it (abortSaga). Never "
        "reported as FAILED.",
    },
)
OrderStatus = described(
    DomainOrderStatus,
    "OrderStatus",
    "Where an order is; its saga moves it.",
    {
        "PENDING": "Placed; its saga is reserving stock and has not confirmed it yet.",
        "CONFIRMED": "Its stock is reserved and it is confirmed; it ships once the warehouses dispatch "
        "its shipments.",
        "PARTIALLY_SHIPPED": "Some of its shipments were dispatched, others wait: it can no longer be "
        "cancelled.",
        "SHIPPED": "Every one of its shipments was dispatched: the goods left the warehouses. It can no "
        "longer be cancelled.",
        "CANCELLING": "Its cancellation is decided but not done: stock may still be held, a compensation "
        "may wait for a retry or an operator.",
        "CANCELLED": "Cancelled (by the customer, an operator's abort or a failed step), its stock released.",
    },
)
StorageCondition = described(
    DomainStorageCondition,
    "StorageCondition",
    "How goods must be kept. A product is stocked only in sections with its condition.",
    {
        "AMBIENT": "At room temperature.",
        "REFRIGERATED": "Chilled, above freezing.",
        "FROZEN": "Below freezing.",
    },
)
ErrorCode = described(
    DomainProblemCode,
    "ErrorCode",
    "Why an input was refused: a stable code for programs (the message is for people).",
    {
        "REQUIRED": "A required value is empty or blank (or a list names nothing).",
        "TOO_LONG": "Text longer than its limit: 64 characters for codes and SKUs, 200 for other text.",
        "INVALID_QUANTITY": "A quantity outside 1 to 1000000, or a stock change of 0.",
        "NO_LINES": "An order without lines.",
        "TOO_MANY_LINES": "An order of more than 100 lines.",
        "UNKNOWN_SKU": "No such product (or the section holds none of it).",
        "UNKNOWN_WAREHOUSE": "No warehouse with this code.",
        "UNKNOWN_SECTION": "The warehouse has no section with this code.",
        "DUPLICATE_WAREHOUSE": "A warehouse with this code exists already.",
        "DUPLICATE_SECTION": "A section code listed twice.",
        "DUPLICATE_PRODUCT": "A product with this SKU exists already.",
        "CONDITION_MISMATCH": "The section's storage condition is not the product's.",
        "IDEMPOTENCY_KEY_REUSED": "The caller used this idempotency key for a different request.",
        "OUT_OF_RANGE": "A number outside its range; the message gives the range.",
        "UNKNOWN_SAGA": "No such saga.",
        "UNKNOWN_ORDER": "No such order, or another customer's.",
        "SAGA_NOT_PARKED": "Only a saga that NEEDS_ATTENTION can be retried.",
        "SAGA_FINISHED": "The saga is COMPLETED or FAILED: there is nothing to abort.",
        "SAGA_ALREADY_COMPENSATING": "The saga is turning back already.",
        "ORDER_ALREADY_SHIPPED": "The order's shipment was dispatched: too late to cancel.",
        "ORDER_ALREADY_CANCELLED": "The order is cancelled, or being cancelled.",
        "FAULT_INJECTION_DISABLED": "The service runs without --enable-fault-injection.",
        "FAULT_NOT_SUPPORTED": "The fault cannot be staged on this database.",
        "INVALID_TEXT": "Text that cannot be stored: it holds a NUL character or a lone surrogate.",
        "FORBIDDEN": "The caller may not do this for that customer (a customer acts only for itself).",
        "UNKNOWN_SHIPMENT": "No such shipment.",
        "SHIPMENT_ALREADY_DISPATCHED": "The shipment was dispatched already.",
        "SHIPMENT_NOT_READY": "The order's saga has not completed yet (its shipments are still being "
        "created, or it waits for an operator): dispatch once it is COMPLETED.",
        "BELOW_RESERVED": "The change would leave less on hand than the section holds reserved.",
        "INVALID_URL": "Not an http or https URL a webhook can be sent to (or one with credentials).",
        "URL_NOT_ALLOWED": "The URL's host resolves to a loopback, private, link-local or other "
        "non-public address, which this service does not send to (serve --allow-private-webhook-urls).",
        "UNKNOWN_EVENT_TYPE": "No journal event has this type (docs/events.md lists them).",
        "UNKNOWN_WEBHOOK_ENDPOINT": "No such webhook endpoint.",
        "NOT_FAILED": "That delivery has not failed, so there is nothing to send again.",
        "UNKNOWN_COMMAND": "No shipment command this service sent has that commandId.",
        "SIGNING_NOT_CONFIGURED": "A warehouse may be given a serviceUrl only when the service signs "
        "its commands (serve --warehouse-service-secret-file).",
        "OUTCOME_NOT_AWAITED": "The saga no longer waits for that outcome: the step timed out, the saga "
        "turned back (its shipment is cancelled), or another outcome was reported first.",
        "NO_WAREHOUSE_SERVICE": "A rerouted retry found a warehouse with no service URL now: its "
        "shipment, which a remote warehouse may hold, cannot go to the built-in warehouse.",
    },
)
SagaStepName = described(
    Step,
    "SagaStepName",
    "A step of the order saga: four forward steps, and the compensations that undo them.",
    {
        "CREATE_ORDER": "Records the order as PENDING.",
        "RESERVE_STOCK": "Reserves every line's quantity in sections that hold the product, warehouse by "
        "warehouse.",
        "CONFIRM_ORDER": "Confirms the order.",
        "CREATE_SHIPMENT": "Creates one shipment instruction per warehouse the picks come from.",
        "RELEASE_STOCK": "Compensation: gives the reserved stock back.",
        "CANCEL_ORDER": "Compensation: cancels the order.",
        "CANCEL_SHIPMENT": "Compensation: cancels the shipments created, when a warehouse refuses its "
        "shipment or the order is cancelled before dispatch.",
    },
)
SagaStepStatus = described(
    StepStatus,
    "SagaStepStatus",
    "How a step's latest attempt went.",
    {
        "RUNNING": "An attempt is in flight.",
        "RETRYING": "An attempt failed transiently or passed its deadline; the step is tried again "
        "after a pause.",
        "SUCCEEDED": "Done.",
        "FAILED": "Failed for good (refused, or every attempt used): the saga turns back, or parks for "
        "an operator.",
        "TIMED_OUT": "The last attempt passed its deadline.",
        "ABANDONED": "The saga was turned back (aborted, cancelled) before the attempt finished; the "
        "attempt had no effect.",
    },
)
FailureKind = described(
    DomainFailureKind,
    "FailureKind",
    "Why a saga turned back or waits for an operator, as a stable kind (the reason's text varies).",
    {
        "INSUFFICIENT_STOCK": "The reservation found too little stock.",
        "REJECTED": "A participant refused the step: retrying cannot help.",
        "UNAVAILABLE": "The participant kept failing transiently until every attempt was used.",
        "TIMED_OUT": "The step passed its deadline on its last attempt.",
        "ABORTED": "An operator aborted the saga.",
        "CANCELLED": "The order was cancelled.",
    },
)
MovementKind = described(
    DomainMovementKind,
    "MovementKind",
    "Why stock changed.",
    {
        "RECEIPT": "Goods came in: onHand up.",
        "RESERVATION": "An order's saga reserved them: reserved up.",
        "RELEASE": "A compensation gave them back: reserved down.",
        "DISPATCH": "They left with a shipment: onHand and reserved down.",
        "ADJUSTMENT": "A cycle count, damage or a write-off: onHand up or down.",
    },
)


@strawberry.enum(description="Where a shipment is in its life at its warehouse.")
class ShipmentStatus(enum.Enum):
    # domain/model/saga/shipments.py's ShipmentStatus, and the name a created shipment had before it.
    REQUESTED = strawberry.enum_value(
        "REQUESTED",
        description="Sent to the warehouse, not answered yet (awaitingSince: a remote warehouse accepted "
        "it and reports later).",
    )
    CREATED = strawberry.enum_value("CREATED", description="The warehouse holds it, to be picked and sent.")
    REJECTED = strawberry.enum_value(
        "REJECTED", description="The warehouse refused it; its order is cancelled."
    )
    CANCELLED = strawberry.enum_value(
        "CANCELLED", description="Withdrawn with its order (or never created, its order turned back)."
    )
    DISPATCHED = strawberry.enum_value(
        "DISPATCHED", description="Picked and sent: its stock left the warehouse."
    )
    PENDING = strawberry.enum_value(
        "PENDING",
        description="What a created shipment was called before shipments were made per warehouse.",
        deprecation_reason="Never returned: a shipment waiting to be dispatched is CREATED.",
    )
