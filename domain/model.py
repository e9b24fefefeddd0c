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
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


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
