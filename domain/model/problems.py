"""Why a request was refused: a stable code for programs, a field, and a sentence for people."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ProblemCode(enum.Enum):
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    NO_LINES = "NO_LINES"
    TOO_MANY_LINES = "TOO_MANY_LINES"
    UNKNOWN_SKU = "UNKNOWN_SKU"
    UNKNOWN_WAREHOUSE = "UNKNOWN_WAREHOUSE"
    UNKNOWN_SECTION = "UNKNOWN_SECTION"
    DUPLICATE_WAREHOUSE = "DUPLICATE_WAREHOUSE"
    DUPLICATE_SECTION = "DUPLICATE_SECTION"
    DUPLICATE_PRODUCT = "DUPLICATE_PRODUCT"
    CONDITION_MISMATCH = "CONDITION_MISMATCH"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNKNOWN_SAGA = "UNKNOWN_SAGA"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    SAGA_NOT_PARKED = "SAGA_NOT_PARKED"
    SAGA_FINISHED = "SAGA_FINISHED"
    SAGA_ALREADY_COMPENSATING = "SAGA_ALREADY_COMPENSATING"
    ORDER_ALREADY_SHIPPED = "ORDER_ALREADY_SHIPPED"
    ORDER_ALREADY_CANCELLED = "ORDER_ALREADY_CANCELLED"
    FAULT_INJECTION_DISABLED = "FAULT_INJECTION_DISABLED"
    FAULT_NOT_SUPPORTED = "FAULT_NOT_SUPPORTED"  # the fault cannot be staged on this database
    INVALID_TEXT = "INVALID_TEXT"
    FORBIDDEN = "FORBIDDEN"  # the caller may not do this for that customer
    UNKNOWN_SHIPMENT = "UNKNOWN_SHIPMENT"
    SHIPMENT_ALREADY_DISPATCHED = "SHIPMENT_ALREADY_DISPATCHED"
    SHIPMENT_NOT_READY = "SHIPMENT_NOT_READY"  # its order's saga has not completed, nor turned back
    BELOW_RESERVED = "BELOW_RESERVED"
    INVALID_URL = "INVALID_URL"  # not an http(s) URL a webhook can be sent to
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"  # it resolves to an address this service may not send to
    UNKNOWN_EVENT_TYPE = "UNKNOWN_EVENT_TYPE"
    UNKNOWN_WEBHOOK_ENDPOINT = "UNKNOWN_WEBHOOK_ENDPOINT"
    NOT_FAILED = "NOT_FAILED"  # a redelivery of an event whose delivery has not failed
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"  # no shipment command of this service has that id
    SIGNING_NOT_CONFIGURED = "SIGNING_NOT_CONFIGURED"  # a warehouse URL, with no secret to sign with
    # The saga no longer waits for that outcome (the step timed out or the saga turned back), or
    # another outcome of the command was recorded first.
    OUTCOME_NOT_AWAITED = "OUTCOME_NOT_AWAITED"
    # A shipment a remote warehouse service may hold cannot be sent on to the built-in warehouse.
    NO_WAREHOUSE_SERVICE = "NO_WAREHOUSE_SERVICE"


@dataclass(frozen=True, slots=True)
class Problem:
    code: ProblemCode
    field: str | None  # the input field at fault; None when the request as a whole is refused
    message: str


MAX_CODE = 64
MAX_TEXT = 200
MAX_LINES = 100
MAX_QUANTITY = 1_000_000
# Every count the service keeps and serves (stock on hand, per section and per product) fits GraphQL's
# Int, a signed 32-bit integer (GraphQL spec, section 3.5.1), and PostgreSQL's integer columns.
MAX_COUNT = 2**31 - 1


def is_storable(text: str) -> bool:
    """Whether every database keeps `text` as it is: no NUL (PostgreSQL refuses it in text columns,
    SQLite keeps it) and only Unicode scalar values (a lone surrogate, which JSON can carry, has no
    UTF-8 encoding)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: str, field: str, limit: int) -> list[Problem]:
    if not value.strip():
        return [Problem(ProblemCode.REQUIRED, field, f"{field} must not be empty")]
    if len(value) > limit:
        return [Problem(ProblemCode.TOO_LONG, field, f"{field} is longer than {limit} characters")]
    return []


def check_stock_delta(value: int, field: str) -> list[Problem]:
    """A change of a stock count: not zero, and within what a count can hold (MAX_COUNT either way)."""
    if value == 0:
        return [Problem(ProblemCode.INVALID_QUANTITY, field, f"{field} must not be 0")]
    if abs(value) > MAX_COUNT:
        message = f"{field} must be between -{MAX_COUNT} and {MAX_COUNT}"
        return [Problem(ProblemCode.OUT_OF_RANGE, field, message)]
    return []


def check_quantity(value: int, field: str) -> list[Problem]:
    if not 1 <= value <= MAX_QUANTITY:
        return [Problem(ProblemCode.INVALID_QUANTITY, field, f"{field} must be between 1 and {MAX_QUANTITY}")]
    return []
