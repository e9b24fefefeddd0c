"""Remote warehouse services: each warehouse's service URL, and a remote shipment's reference

The read model also shows since when a saga awaits a remote warehouse's answer about a shipment.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("warehouses") as batch:
        batch.add_column(sa.Column("service_url", sa.String(2048), nullable=True))
    with op.batch_alter_table("shipment_view") as batch:
        batch.add_column(sa.Column("reference", sa.String(200), nullable=True))
        batch.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shipment_view") as batch:
        batch.drop_column("accepted_at")
        batch.drop_column("reference")
    with op.batch_alter_table("warehouses") as batch:
        batch.drop_column("service_url")
