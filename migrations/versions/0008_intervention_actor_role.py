"""saga_timeline.actor_role: the role in which someone stepped in, on the events of an intervention

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: events recorded before it was kept (and all but interventions) have no role.
    op.add_column("saga_timeline", sa.Column("actor_role", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("saga_timeline") as batch:
        batch.drop_column("actor_role")
