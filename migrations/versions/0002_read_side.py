"""read side: saga steps and shipments as read tables, keyset indexes for newest-first pages

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saga_step_view",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("step", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("saga_id", "position", name=op.f("pk_saga_step_view")),
    )
    op.create_table(
        "shipment_view",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("picks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_view")),
        sa.UniqueConstraint("order_id", name=op.f("uq_shipment_view_order_id")),
    )
    with op.batch_alter_table("order_view", schema=None) as batch_op:
        batch_op.create_index("ix_order_view_created_at", ["created_at", "id"], unique=False)

    with op.batch_alter_table("saga_view", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_step", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("duration_ms", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_saga_view_customer_id", ["customer_id"], unique=False)
        batch_op.create_index("ix_saga_view_started_at", ["started_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("saga_view", schema=None) as batch_op:
        batch_op.drop_index("ix_saga_view_started_at")
        batch_op.drop_index("ix_saga_view_customer_id")
        batch_op.drop_column("duration_ms")
        batch_op.drop_column("failed_step")

    with op.batch_alter_table("order_view", schema=None) as batch_op:
        batch_op.drop_index("ix_order_view_created_at")

    op.drop_table("shipment_view")
    op.drop_table("saga_step_view")
