"""order_view.picks: empty once the order's stock is released or dispatched

An order's picks are the stock it holds reserved (persistence/projection.py's reserved_picks): none
once its RELEASE_STOCK step succeeded, or once its shipment left the warehouse, whose own picks say
what left. Rows written before kept the picks of the reservation; this clears them as a rebuild
of the read tables would.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_order_view = sa.table(
    "order_view", sa.column("saga_id"), sa.column("picks", sa.JSON), sa.column("shipped_at")
)
_steps = sa.table("saga_step_view", sa.column("saga_id"), sa.column("step"), sa.column("status"))


def upgrade() -> None:
    released = sa.select(_steps.c.saga_id).where(
        _steps.c.step == "RELEASE_STOCK", _steps.c.status == "SUCCEEDED"
    )
    op.execute(
        _order_view.update()
        .where(sa.or_(_order_view.c.shipped_at.is_not(None), _order_view.c.saga_id.in_(released)))
        .values(picks=[])
    )


def downgrade() -> None:
    pass  # the picks cleared were stock no longer held; a rebuild under 0009 writes them again
