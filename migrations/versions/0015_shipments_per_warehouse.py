"""shipments per warehouse: an order gets one shipment per warehouse its picks come from

A shipment used to be one per order (unique order_id), PENDING until dispatched. Now an order has one
per warehouse (warehouse_code), and a shipment's status follows its life at the warehouse: REQUESTED,
CREATED (what PENDING meant), REJECTED, CANCELLED, DISPATCHED (domain/model/saga/shipments.py). This brings
stored rows to what the projection now writes, as `projections rebuild` would: a shipment made
before is one with all its order's picks, from the warehouse of its first pick; a saga whose
CREATE_SHIPMENT had started but not succeeded shows its shipments as requested, or withdrawn
(CANCELLED) if the saga turned back since: it is turning back or failed, or it ran a compensation
(RELEASE_STOCK, CANCEL_ORDER or CANCEL_SHIPMENT), as one parked in its compensations
(NEEDS_ATTENTION) did. Shipments made before keep no warehouse in the participant's table.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TABLES = ("shipments", "shipment_view")
_shipment_view = sa.table(
    "shipment_view",
    sa.column("id"),
    sa.column("order_id"),
    sa.column("saga_id"),
    sa.column("picks", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("status"),
    sa.column("warehouse_code"),
)
_saga_view = sa.table("saga_view", sa.column("id"), sa.column("order_id"), sa.column("status"))
_steps = sa.table(
    "saga_step_view",
    sa.column("saga_id"),
    sa.column("step"),
    sa.column("status"),
    sa.column("started_at", sa.DateTime(timezone=True)),
)
_reservations = sa.table("reservations", sa.column("order_id"), sa.column("picks", sa.JSON))
# A saga turned back withdraws the shipments it had requested (domain/model/saga/fold.py's _turn_back).
# Its status says so while it compensates and once it failed; a saga parked since (NEEDS_ATTENTION)
# says so only by the compensations it ran.
_TURNED_BACK = ("COMPENSATING", "FAILED")
_COMPENSATIONS = ("RELEASE_STOCK", "CANCEL_ORDER", "CANCEL_SHIPMENT")


def upgrade() -> None:
    with op.batch_alter_table("shipments") as batch:
        batch.drop_constraint("uq_shipments_order_id", type_="unique")
        batch.add_column(sa.Column("warehouse_code", sa.String(length=64), nullable=True))
        batch.alter_column("status", server_default="CREATED", existing_type=sa.String(length=20))
        batch.create_index("ix_shipments_order_id", ["order_id"])
    with op.batch_alter_table("shipment_view") as batch:
        batch.drop_constraint("uq_shipment_view_order_id", type_="unique")
        batch.add_column(sa.Column("warehouse_code", sa.String(length=64), server_default="", nullable=False))
        batch.alter_column("status", server_default="CREATED", existing_type=sa.String(length=20))
        batch.create_index("ix_shipment_view_order_id", ["order_id", "warehouse_code"])
    for name in _TABLES:
        table = sa.table(name, sa.column("status"))
        op.execute(table.update().where(table.c.status == "PENDING").values(status="CREATED"))
    conn = op.get_bind()
    for row in conn.execute(sa.select(_shipment_view.c.id, _shipment_view.c.picks)).all():
        first = row.picks[0]["warehouseCode"] if row.picks else ""
        conn.execute(
            _shipment_view.update().where(_shipment_view.c.id == row.id).values(warehouse_code=first)
        )
    _requested(conn)


def _requested(conn: sa.Connection) -> None:
    """The shipments of sagas whose CREATE_SHIPMENT started and never succeeded, as the projection
    now shows them: one per warehouse of the reservation's picks, requested when the step first
    started, under the id the saga gives it."""
    first_start = (
        sa.select(_steps.c.saga_id, sa.func.min(_steps.c.started_at).label("at"))
        .where(_steps.c.step == "CREATE_SHIPMENT")
        .group_by(_steps.c.saga_id)
        .subquery()
    )
    succeeded = sa.select(_steps.c.saga_id).where(
        _steps.c.step == "CREATE_SHIPMENT", _steps.c.status == "SUCCEEDED"
    )
    compensated = sa.exists().where(_steps.c.saga_id == _saga_view.c.id, _steps.c.step.in_(_COMPENSATIONS))
    sagas = conn.execute(
        sa.select(
            _saga_view.c.id,
            _saga_view.c.order_id,
            _saga_view.c.status,
            first_start.c.at,
            _reservations.c.picks,
            compensated.label("compensated"),
        )
        .join(first_start, first_start.c.saga_id == _saga_view.c.id)
        .join(_reservations, _reservations.c.order_id == _saga_view.c.order_id)
        .where(_saga_view.c.id.not_in(succeeded))
    ).all()
    rows: list[dict[str, Any]] = []
    for saga in sagas:
        turned_back = saga.status in _TURNED_BACK or saga.compensated
        status = "CANCELLED" if turned_back else "REQUESTED"
        for code in sorted({p["warehouseCode"] for p in saga.picks}):
            rows.append(
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ordersaga:shipment:{saga.id}:{code}")),
                    "order_id": saga.order_id,
                    "saga_id": saga.id,
                    "picks": [p for p in saga.picks if p["warehouseCode"] == code],
                    "created_at": saga.at,
                    "status": status,
                    "warehouse_code": code,
                }
            )
    if rows:
        conn.execute(_shipment_view.insert(), rows)


def downgrade() -> None:
    # The earlier schema holds one shipment per order: this fails (on the unique constraint) while an
    # order has shipments from several warehouses.
    shipment_view = sa.table("shipment_view", sa.column("status"), sa.column("dispatched_at"))
    op.execute(shipment_view.delete().where(shipment_view.c.status.in_(("REQUESTED", "REJECTED"))))
    for name in _TABLES:
        table = sa.table(name, sa.column("status"))
        op.execute(table.update().where(table.c.status == "CREATED").values(status="PENDING"))
    for name in _TABLES:
        with op.batch_alter_table(name) as batch:
            batch.drop_index(f"ix_{name}_order_id")
            batch.drop_column("warehouse_code")
            batch.alter_column("status", server_default="PENDING", existing_type=sa.String(length=20))
            batch.create_unique_constraint(f"uq_{name}_order_id", ["order_id"])
