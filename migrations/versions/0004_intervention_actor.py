"""saga_timeline.actor: who stepped in, on the events of an intervention

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: events recorded before it was kept (and all but interventions) have no actor.
    op.add_column("saga_timeline", sa.Column("actor", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("saga_timeline") as batch:
        batch.drop_column("actor")
