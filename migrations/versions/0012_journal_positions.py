"""Journal positions: every event's place in the whole journal, in commit order

Adds `journal.position` and `saga_timeline.position`, the counter row `journal_head`, and `relays`
(what each outbound relay has sent). Events already stored are numbered in the order they were
recorded (an event never before an earlier one of its saga, whatever the clocks said), saga and
sequence breaking ties: an order they could have committed in.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    # Ordered by when each event was recorded, but never before an earlier event of its saga: the
    # clocks of several processes may disagree, and consumers read a saga's events in position order.
    op.execute(
        "UPDATE journal SET position = numbered.n FROM ("
        " SELECT saga_id, sequence, row_number() OVER (ORDER BY settled_at, saga_id, sequence) AS n"
        " FROM (SELECT saga_id, sequence, max(recorded_at) OVER ("
        "   PARTITION BY saga_id ORDER BY sequence ROWS UNBOUNDED PRECEDING) AS settled_at"
        "  FROM journal) AS monotonic"
        ") AS numbered"
        " WHERE journal.saga_id = numbered.saga_id AND journal.sequence = numbered.sequence"
    )
    op.create_index("ix_journal_position", "journal", ["position"], unique=True)
    with op.batch_alter_table("saga_timeline") as batch:
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE saga_timeline SET position = (SELECT journal.position FROM journal "
        "WHERE journal.saga_id = saga_timeline.saga_id AND journal.sequence = saga_timeline.sequence)"
    )
    with op.batch_alter_table("saga_timeline") as batch:
        batch.alter_column("position", existing_type=sa.BigInteger(), nullable=False)
    op.create_index("ix_saga_timeline_position", "saga_timeline", ["position"], unique=True)
    op.create_table(
        "journal_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO journal_head (id, position) SELECT 1, COALESCE(MAX(position), 0) FROM journal")
    op.create_table(
        "relays",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("relays")
    op.drop_table("journal_head")
    op.drop_index("ix_saga_timeline_position", "saga_timeline")
    with op.batch_alter_table("saga_timeline") as batch:
        batch.drop_column("position")
    op.drop_index("ix_journal_position", "journal")
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("position")
