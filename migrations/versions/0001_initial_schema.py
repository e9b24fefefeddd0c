"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("saga_id", "sequence", name=op.f("pk_journal")),
    )
    op.create_table(
        "order_view",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("picks", sa.JSON(), nullable=False),
        sa.Column("shipment_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_view")),
    )
    with op.batch_alter_table("order_view", schema=None) as batch_op:
        batch_op.create_index("ix_order_view_customer_id", ["customer_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_table(
        "placements",
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_placements")),
    )
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("storage_condition", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("picks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    op.create_table(
        "saga_timeline",
        sa.Column("saga_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("step", sa.String(length=30), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("saga_id", "sequence", name=op.f("pk_saga_timeline")),
    )
    op.create_table(
        "saga_view",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("current_step", sa.String(length=30), nullable=True),
        sa.Column("next_wakeup_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saga_view")),
    )
    with op.batch_alter_table("saga_view", schema=None) as batch_op:
        batch_op.create_index("ix_saga_view_status", ["status"], unique=False)

    op.create_table(
        "shipments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("order_id", sa.String(length=36), nullable=False),
        sa.Column("picks", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint("order_id", name=op.f("uq_shipments_order_id")),
    )
    op.create_table(
        "warehouses",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_warehouses")),
    )
    op.create_table(
        "sections",
        sa.Column("warehouse_code", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("storage_condition", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["warehouse_code"], ["warehouses.code"], name=op.f("fk_sections_warehouse_code")
        ),
        sa.PrimaryKeyConstraint("warehouse_code", "code", name=op.f("pk_sections")),
    )
    op.create_table(
        "stock",
        sa.Column("warehouse_code", sa.String(length=64), nullable=False),
        sa.Column("section_code", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= on_hand", name=op.f("ck_stock_reserved_within_on_hand")
        ),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"], name=op.f("fk_stock_sku")),
        sa.ForeignKeyConstraint(
            ["warehouse_code", "section_code"],
            ["sections.warehouse_code", "sections.code"],
            name=op.f("fk_stock_warehouse_code"),
        ),
        sa.PrimaryKeyConstraint("warehouse_code", "section_code", "sku", name=op.f("pk_stock")),
    )
    with op.batch_alter_table("stock", schema=None) as batch_op:
        batch_op.create_index("ix_stock_sku", ["sku"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stock", schema=None) as batch_op:
        batch_op.drop_index("ix_stock_sku")

    op.drop_table("stock")
    op.drop_table("sections")
    op.drop_table("warehouses")
    op.drop_table("shipments")
    with op.batch_alter_table("saga_view", schema=None) as batch_op:
        batch_op.drop_index("ix_saga_view_status")

    op.drop_table("saga_view")
    op.drop_table("saga_timeline")
    op.drop_table("reservations")
    op.drop_table("products")
    op.drop_table("placements")
    op.drop_table("orders")
    with op.batch_alter_table("order_view", schema=None) as batch_op:
        batch_op.drop_index("ix_order_view_customer_id")

    op.drop_table("order_view")
    op.drop_table("journal")
