"""saga_timeline indexed by time, so activity per minute reads only its window's transitions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_saga_timeline_occurred_at", "saga_timeline", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_saga_timeline_occurred_at", table_name="saga_timeline")
