"""Value types shared by the participants and the saga: products, order lines, picks."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StorageCondition(enum.Enum):
    AMBIENT = "AMBIENT"
    REFRIGERATED = "REFRIGERATED"
    FROZEN = "FROZEN"


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    # Some of its shipments left their warehouses, others wait to be dispatched.
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    # The saga is turning back: its cancellation is decided, not yet done (stock may still be held,
    # a compensation may wait for a retry or an operator).
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"


class MovementKind(enum.Enum):
    """Why a section's stock changed."""

    RECEIPT = "RECEIPT"  # goods came in: on-hand up
    RESERVATION = "RESERVATION"  # an order's saga reserved them: reserved up
    RELEASE = "RELEASE"  # a compensation gave them back: reserved down
    DISPATCH = "DISPATCH"  # they left with a shipment: on-hand and reserved down
    ADJUSTMENT = "ADJUSTMENT"  # a cycle count, damage or write-off: on-hand up or down


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Pick:
    """A quantity of one SKU taken from one storage section of one warehouse."""

    warehouse_code: str
    section_code: str
    sku: str
    quantity: int
