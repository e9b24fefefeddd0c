"""Participant commands for tests that call a participant directly."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.model.values import OrderLine
from domain.ports import StepCommand


def command_for(saga_id: str, *lines: OrderLine, step: str = "RESERVE_STOCK") -> StepCommand:
    return StepCommand(
        command_id=f"{saga_id}:{step}",
        saga_id=saga_id,
        order_id=f"order-{saga_id}",
        customer_id="c-1",
        lines=lines,
        picks=(),
        reservation_id=f"{saga_id}:RESERVE_STOCK",
        at=datetime.now(UTC),
    )
