"""The read model as a function of a saga's state: one saga_view row and one order_view row.

Because the rows are computed from the folded state, the live projection (after each transaction)
and a rebuild from the journal (after the last event) cannot disagree.
"""

from __future__ import annotations

from typing import Any

from domain.model import OrderStatus, Pick
from domain.saga import SagaState, Step, StepStatus


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
    }


def order_status(state: SagaState) -> OrderStatus:
    if state.order_cancelled:
        return OrderStatus.CANCELLED
    confirmed = any(r.step is Step.CONFIRM_ORDER and r.status is StepStatus.SUCCEEDED for r in state.history)
    return OrderStatus.CONFIRMED if confirmed else OrderStatus.PENDING


def order_row(state: SagaState) -> dict[str, Any]:
    return {
        "id": state.order_id,
        "saga_id": state.saga_id,
        "customer_id": state.customer_id,
        "status": order_status(state).value,
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in state.lines],
        "picks": picks_json(state.picks),
        "shipment_id": state.shipment_id,
        "created_at": state.started_at,
        "updated_at": state.updated_at,
    }


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
