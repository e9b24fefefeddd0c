"""shipment reasons: a refused shipment's read row keeps why its warehouse refused it

shipment_view gains `reason`, as the projection now writes it: the reason of the shipment's
ShipmentRejected event, null for a shipment never refused. Rows stored before get it from the journal,
as `projections rebuild` would.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_journal = sa.table("journal", sa.column("type"), sa.column("data", sa.JSON))
_shipment_view = sa.table("shipment_view", sa.column("id"), sa.column("reason"))


def upgrade() -> None:
    with op.batch_alter_table("shipment_view") as batch:
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
    conn = op.get_bind()
    refused = conn.execute(sa.select(_journal.c.data).where(_journal.c.type == "ShipmentRejected")).all()
    for (data,) in refused:
        conn.execute(
            _shipment_view.update()
            .where(_shipment_view.c.id == data["shipment_id"])
            .values(reason=data["reason"])
        )


def downgrade() -> None:
    with op.batch_alter_table("shipment_view") as batch:
        batch.drop_column("reason")
