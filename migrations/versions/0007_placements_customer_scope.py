"""placements.customer_scope: keys bound by release 0.1.0 belong to their order's customer

Release 0.1.0 had no callers to tell apart: it bound the client's idempotency key as sent, and
fingerprinted the request as text joined by '|'. Since 0.2.0 a key is bound under a digest of the
caller and the key (api/graphql/orders.py's own_key), and the request is fingerprinted from its
canonical JSON (domain/orchestrator.py's PlaceOrder.fingerprint), so a 0.1.0 key was never found
again and its replay placed a second order. This marks each 0.1.0 placement with the customer of
its order, the one it belonged to, and gives it the current fingerprint; placeOrder then finds it
for a request in that customer's name (which only the customer, and staff, may make).

A 0.1.0 placement is told from a later one by its fingerprint, recomputed from its order both ways:
a database served by 0.2.0 after 0.1.0 holds both kinds. Both fingerprints are written out here as
they were, not imported, so that this revision means the same whatever later code does.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_placements = sa.table(
    "placements",
    sa.column("idempotency_key"),
    sa.column("fingerprint"),
    sa.column("order_id"),
    sa.column("customer_scope"),
)
_orders = sa.table("orders", sa.column("id"), sa.column("customer_id"), sa.column("lines", sa.JSON))


def _joined(customer_id: str, lines: list[dict[str, Any]]) -> str:
    """Release 0.1.0's fingerprint."""
    text = "|".join([customer_id, *sorted(f"{x['sku']}x{x['quantity']}" for x in lines)])
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(customer_id: str, lines: list[dict[str, Any]]) -> str:
    """The fingerprint from 0.2.0 on: SHA-256 of the request as canonical JSON."""
    request = {"customerId": customer_id, "lines": sorted([x["sku"], x["quantity"]] for x in lines)}
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _refingerprint(scoped: bool) -> None:
    """Upgrading (`scoped`): mark and refingerprint every 0.1.0 placement. Downgrading: put the
    marked ones back as 0.1.0 wrote them."""
    conn = op.get_bind()
    query = sa.select(
        _placements.c.idempotency_key, _placements.c.fingerprint, _orders.c.customer_id, _orders.c.lines
    ).join(_orders, _orders.c.id == _placements.c.order_id)
    if not scoped:
        query = query.where(_placements.c.customer_scope.is_not(None))
    changes = []
    for row in conn.execute(query):
        written, current = _joined(row.customer_id, row.lines), _canonical(row.customer_id, row.lines)
        if scoped and row.fingerprint == written:
            changes.append({"key": row.idempotency_key, "scope": row.customer_id, "print": current})
        elif not scoped:
            changes.append({"key": row.idempotency_key, "scope": None, "print": written})
    if changes:
        conn.execute(
            _placements.update()
            .where(_placements.c.idempotency_key == sa.bindparam("key"))
            .values(customer_scope=sa.bindparam("scope"), fingerprint=sa.bindparam("print")),
            changes,
        )


def upgrade() -> None:
    # NULL for every key scoped to its caller, which is every key bound since 0.2.0.
    op.add_column("placements", sa.Column("customer_scope", sa.String(length=200), nullable=True))
    _refingerprint(scoped=True)


def downgrade() -> None:
    _refingerprint(scoped=False)
    with op.batch_alter_table("placements") as batch:
        batch.drop_column("customer_scope")
