"""order_view.status CANCELLING: an order whose saga is turning back, its cancellation not yet done

Orders read CANCELLED from the moment their saga turned back, even while its compensations still
held the stock or waited, parked, for an operator. An order is CANCELLED once its saga's
CANCEL_ORDER step succeeded, and CANCELLING before (persistence/read/projection.py's
order_status); this brings stored rows to that rule, as a rebuild of the read tables would.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_order_view = sa.table("order_view", sa.column("saga_id"), sa.column("status"))
_steps = sa.table("saga_step_view", sa.column("saga_id"), sa.column("step"), sa.column("status"))


def _cancelled() -> sa.Select[tuple[str]]:
    return sa.select(_steps.c.saga_id).where(_steps.c.step == "CANCEL_ORDER", _steps.c.status == "SUCCEEDED")


def upgrade() -> None:
    op.execute(
        _order_view.update()
        .where(_order_view.c.status == "CANCELLED", _order_view.c.saga_id.not_in(_cancelled()))
        .values(status="CANCELLING")
    )


def downgrade() -> None:
    op.execute(_order_view.update().where(_order_view.c.status == "CANCELLING").values(status="CANCELLED"))
