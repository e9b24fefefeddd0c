"""order lifecycle: journal event format versions; dispatched shipments, shipped orders; stock movements

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

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
    # Filled for existing sagas by `ordersaga projections rebuild`, for new ones as they go.
    with op.batch_alter_table("saga_view") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(length=30), nullable=True))
    movements = op.create_table(
        "stock_movements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("warehouse_code", sa.String(length=64), nullable=False),
        sa.Column("section_code", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("on_hand_change", sa.Integer(), nullable=False),
        sa.Column("reserved_change", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_movements")),
    )
    op.create_index("ix_stock_movements_sku", "stock_movements", ["sku", "occurred_at", "id"])
    _open_the_books(movements)


def _open_the_books(movements: sa.Table) -> None:
    """Stock held before movements were kept enters as one opening movement per section, so that
    every section's movements add up to its stock from here on."""
    stock = sa.table(
        "stock",
        sa.column("warehouse_code"),
        sa.column("section_code"),
        sa.column("sku"),
        sa.column("on_hand"),
        sa.column("reserved"),
    )
    now = datetime.now(UTC)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "warehouse_code": r.warehouse_code,
            "section_code": r.section_code,
            "sku": r.sku,
            "kind": "RECEIPT",
            "on_hand_change": r.on_hand,
            "reserved_change": r.reserved,
            "reference": "stock held when movements began",
            "occurred_at": now,
        }
        for r in op.get_bind().execute(sa.select(stock))
    ]
    if rows:
        op.bulk_insert(movements, rows)


def downgrade() -> None:
    with op.batch_alter_table("saga_view") as batch:
        batch.drop_column("failure_kind")
    op.drop_index("ix_stock_movements_sku", table_name="stock_movements")
    op.drop_table("stock_movements")
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
