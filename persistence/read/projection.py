"""The read model as a function of a saga's state: its saga_view, saga_step_view, order_view and
shipment_view rows (and the timeline rows of its events).

Because the rows are computed from the folded state, the live projection (after each transaction)
and a rebuild from the journal (after the last event) cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from domain.model.saga import SagaChange, SagaState, ShipmentStatus, Step, StepRecord, StepStatus
from domain.model.values import OrderStatus, Pick

# A step that ended in one of these, after its last attempt, is what the saga failed on.
_FAILED = (StepStatus.FAILED, StepStatus.TIMED_OUT)


def saga_row(state: SagaState) -> dict[str, Any]:
    return {
        "id": state.saga_id,
        "order_id": state.order_id,
        "customer_id": state.customer_id,
        "status": state.status.value,
        # While the saga is parked, the reason shown is why it needs an operator; once it moves on,
        # why it turned back (if it did).
        "failure_reason": state.attention_reason or state.failure_reason,
        "version": state.version,
        "current_step": state.step.value if state.step else None,
        "next_wakeup_at": state.next_wakeup,
        "steps": [
            {
                "name": r.step.value,
                "status": r.status.value,
                "attempts": r.attempts,
                "startedAt": r.started_at.isoformat(),
                "finishedAt": r.finished_at.isoformat() if r.finished_at else None,
                "lastError": r.last_error,
            }
            for r in state.history
        ],
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "failed_step": _failed_step(state),
        "failure_kind": _failure_kind(state),
        "duration_ms": milliseconds(state.started_at, state.updated_at) if state.is_terminal else None,
    }


def _failed_step(state: SagaState) -> str | None:
    """The step that goes with the reason shown: while parked, the step that would not finish;
    otherwise the step whose failure turned the saga back (none for an abort or a cancel)."""
    if state.attention_reason is not None:
        return next((r.step.value for r in reversed(state.history) if r.status in _FAILED), None)
    return state.failed_step.value if state.failed_step else None


def _failure_kind(state: SagaState) -> str | None:
    """The kind of the reason shown: why the saga is parked while it is, else why it turned back."""
    kind = state.attention_kind if state.attention_reason is not None else state.failure_kind
    return kind.value if kind else None


def step_rows(state: SagaState) -> list[dict[str, Any]]:
    return [step_row(state.saga_id, position, r) for position, r in enumerate(state.history, start=1)]


def step_row(saga_id: str, position: int, record: StepRecord) -> dict[str, Any]:
    finished = record.finished_at
    return {
        "saga_id": saga_id,
        "position": position,
        "step": record.step.value,
        "status": record.status.value,
        "attempts": record.attempts,
        "started_at": record.started_at,
        "finished_at": finished,
        "duration_ms": None if finished is None else milliseconds(record.started_at, finished),
    }


def milliseconds(start: datetime, end: datetime) -> int:
    return round((end - start).total_seconds() * 1000)


def shipment_rows(state: SagaState) -> list[dict[str, Any]]:
    """One row per shipment of the saga, in warehouse code order."""
    return [
        {
            "id": s.shipment_id,
            "order_id": state.order_id,
            "saga_id": state.saga_id,
            "warehouse_code": s.warehouse_code,
            "picks": picks_json(s.picks),
            "created_at": s.created_at or s.requested_at,
            "status": s.status.value,
            "dispatched_at": s.dispatched_at,
            "reason": s.reason,
            "reference": s.reference,
            "accepted_at": s.accepted_at,
        }
        for s in state.shipments
    ]


def held_stock(state: SagaState) -> Counter[tuple[str, str, str]]:
    """What the saga holds reserved, per (warehouse, section, sku): its picks, from the reservation
    until stock is released or leaves the warehouse with the dispatched shipment."""
    held: Counter[tuple[str, str, str]] = Counter()
    for p in reserved_picks(state):
        held[p.warehouse_code, p.section_code, p.sku] += p.quantity
    return held


def reserved_picks(state: SagaState) -> tuple[Pick, ...]:
    """The saga's picks while they hold stock reserved: none once it is released, or once they left
    their warehouse with their dispatched shipment (whose own picks say what left)."""
    if _succeeded(state, Step.RELEASE_STOCK) or state.is_dispatched:
        return ()
    gone = {s.warehouse_code for s in state.shipments if s.status is ShipmentStatus.DISPATCHED}
    return tuple(p for p in state.picks if p.warehouse_code not in gone)


def _succeeded(state: SagaState, step: Step) -> bool:
    return any(r.step is step and r.status is StepStatus.SUCCEEDED for r in state.history)


def timeline_rows(change: SagaChange) -> list[dict[str, Any]]:
    """One row per event of `change`, each with the status the saga had right after it."""
    saga_id = change.after.saga_id
    rows = []
    for sequence, (event, status) in enumerate(
        zip(change.events, change.statuses, strict=True), start=change.first_sequence
    ):
        step = getattr(event, "step", None)
        rows.append(
            {
                "saga_id": saga_id,
                "sequence": sequence,
                "type": event.type_name,
                "status": status.value,
                "step": step.value if step else None,
                "attempt": getattr(event, "attempt", None),
                "reason": getattr(event, "reason", None),
                "actor": getattr(event, "actor", None),
                "actor_role": getattr(event, "actor_role", None),
                "occurred_at": event.at,
            }
        )
    return rows


def order_status(state: SagaState) -> OrderStatus:
    # Once the saga turns back, the order's cancellation is decided, and cancelOrder and
    # dispatchShipment refuse it from then on; it is CANCELLED once its CANCEL_ORDER step succeeded,
    # and CANCELLING until then, while stock may still be held or a compensation be parked.
    if state.order_cancelled:
        return OrderStatus.CANCELLED
    if state.is_compensating:
        return OrderStatus.CANCELLING
    if state.is_dispatched:
        return OrderStatus.SHIPPED
    if state.any_dispatched:
        return OrderStatus.PARTIALLY_SHIPPED
    return OrderStatus.CONFIRMED if _succeeded(state, Step.CONFIRM_ORDER) else OrderStatus.PENDING


def order_row(state: SagaState) -> dict[str, Any]:
    return {
        "id": state.order_id,
        "saga_id": state.saga_id,
        "customer_id": state.customer_id,
        "status": order_status(state).value,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in state.lines],
        "picks": picks_json(reserved_picks(state)),
        "shipment_id": state.shipment_id,
        "created_at": state.started_at,
        "updated_at": _order_changed_at(state),
        "shipped_at": state.dispatched_at,
    }


def _order_changed_at(state: SagaState) -> datetime:
    # The order changes when a step that creates, reserves for, confirms, ships or cancels it
    # succeeds, and when it is dispatched (after which nothing changes it); releasing stock, failures
    # and retries change nothing the order shows.
    dispatched = [s.dispatched_at for s in state.shipments if s.dispatched_at is not None]
    if dispatched:
        return max(dispatched)
    return next(
        r.finished_at
        for r in reversed(state.history)
        if r.status is StepStatus.SUCCEEDED and r.step is not Step.RELEASE_STOCK and r.finished_at
    )


def picks_json(picks: tuple[Pick, ...]) -> list[dict[str, Any]]:
    return [
        {
            "warehouseCode": p.warehouse_code,
            "sectionCode": p.section_code,
            "sku": p.sku,
            "quantity": p.quantity,
        }
        for p in picks
    ]


def picks_from_json(data: list[dict[str, Any]]) -> tuple[Pick, ...]:
    return tuple(Pick(p["warehouseCode"], p["sectionCode"], p["sku"], p["quantity"]) for p in data)
