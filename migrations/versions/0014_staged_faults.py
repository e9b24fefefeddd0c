"""Staged faults in the database, so that every process of a deployment meets the same ones

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staged_faults",
        sa.Column("participant", sa.String(20), primary_key=True),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("fail_next", sa.Integer(), nullable=False),
        sa.Column("failure_rate", sa.Float(), nullable=False),
        sa.Column("rejected_warehouses", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("staged_faults")
