"""saga leases: which process drives each running saga, and until when

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Sagas that still move on their own: every status but COMPLETED, FAILED and NEEDS_ATTENTION.
_RUNNING = (
    "'ORDER_CREATED', 'STOCK_RESERVING', 'STOCK_RESERVED', 'ORDER_CONFIRMING', 'ORDER_CONFIRMED', "
    "'SHIPMENT_CREATING', 'STOCK_RESERVATION_FAILED', 'COMPENSATING'"
)


def upgrade() -> None:
    op.create_table(
        "saga_leases",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("saga_id", name=op.f("pk_saga_leases")),
    )
    op.create_index("ix_saga_leases_expires_at", "saga_leases", ["expires_at"])
    op.create_index("ix_saga_leases_owner", "saga_leases", ["owner"])
    # Sagas left running by an earlier version get a lease that has already expired, so that the
    # first process to look claims them.
    op.execute(
        "INSERT INTO saga_leases (saga_id, owner, expires_at) "
        f"SELECT id, '', '1970-01-01 00:00:00' FROM saga_view WHERE status IN ({_RUNNING})"
    )


def downgrade() -> None:
    op.drop_table("saga_leases")
