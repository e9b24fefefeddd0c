"""The rows the read side answers with, one class per view, so that a misspelt column is a type
error wherever a row is read. A query's row becomes one by its mapping (persistence/read/reader.py),
and the row the projection writes by a `**` splat: both carry the same fields under the same names."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

# A JSON column's value as the projection wrote it: a list of objects (steps, lines, picks).
JsonList = list[dict[str, Any]]


class SagaRow(NamedTuple):
    """A saga_view row: a saga as the projection left it."""

    id: str
    order_id: str
    customer_id: str
    status: str
    failure_reason: str | None
    version: int
    current_step: str | None
    next_wakeup_at: datetime | None
    steps: JsonList
    started_at: datetime
    updated_at: datetime
    failed_step: str | None
    duration_ms: int | None
    failure_kind: str | None


class OrderRow(NamedTuple):
    """An order_view row."""

    id: str
    saga_id: str
    customer_id: str
    status: str
    lines: JsonList
    picks: JsonList
    shipment_id: str | None
    created_at: datetime
    updated_at: datetime
    shipped_at: datetime | None


class ShipmentRow(NamedTuple):
    """A shipment_view row."""

    id: str
    order_id: str
    saga_id: str
    picks: JsonList
    created_at: datetime
    status: str
    dispatched_at: datetime | None
    warehouse_code: str
    reason: str | None
    reference: str | None
    accepted_at: datetime | None


class TransitionRow(NamedTuple):
    """A saga_timeline row: one journal event, with the saga's status after it."""

    saga_id: str
    sequence: int
    type: str
    status: str
    step: str | None
    attempt: int | None
    reason: str | None
    occurred_at: datetime
    actor: str | None
    actor_role: str | None
    position: int


class LeaseRow(NamedTuple):
    """A saga_leases row: the process that drives a running saga, and until when."""

    saga_id: str
    owner: str
    expires_at: datetime


class StockLevelRow(NamedTuple):
    """A stock row: one product's units in one warehouse section."""

    warehouse_code: str
    section_code: str
    sku: str
    on_hand: int
    reserved: int


class WarehouseStockRow(NamedTuple):
    """A warehouse with one of its sections and one stock row of it: NULLs where a warehouse has no
    section, or a section holds nothing."""

    warehouse_code: str
    warehouse_name: str
    service_url: str | None
    section_code: str | None
    storage_condition: str | None
    sku: str | None
    on_hand: int | None
    reserved: int | None

    def stock_level(self) -> StockLevelRow | None:
        """The stock row this row carries; None where there is none."""
        if self.section_code is None or self.sku is None or self.on_hand is None or self.reserved is None:
            return None
        return StockLevelRow(self.warehouse_code, self.section_code, self.sku, self.on_hand, self.reserved)


class ProductRow(NamedTuple):
    """A product with its stock summed over every section."""

    sku: str
    name: str
    storage_condition: str
    on_hand: int
    reserved: int


class StockMovementRow(NamedTuple):
    """A stock_movements row: one change of a section's stock."""

    id: str
    warehouse_code: str
    section_code: str
    sku: str
    kind: str
    on_hand_change: int
    reserved_change: int
    reference: str | None
    occurred_at: datetime
