"""order lifecycle: journal event format versions; dispatched shipments, shipped orders

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Entries journalled before versions were kept are in each type's first format.
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    for table in ("shipments", "shipment_view"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("status", sa.String(length=20), server_default="PENDING", nullable=False)
            )
            batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("order_view") as batch:
        batch.add_column(sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_view") as batch:
        batch.drop_column("shipped_at")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("dispatched_at")
    for table in ("shipment_view", "shipments"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("dispatched_at")
            batch.drop_column("status")
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("version")
