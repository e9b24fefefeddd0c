"""Every table, in SQLAlchemy Core. Alembic owns the DDL; `alembic check` keeps the two in step.

Write side: the saga journal and placements (placeOrder's idempotency keys); the other writes'
idempotency keys (request_keys); each participant's own tables
(orders; products, warehouses, sections, stock, reservations; shipments). Read side: saga_view,
saga_step_view, saga_timeline, order_view and shipment_view, projected from the journal in the
transaction that writes it (and rebuilt from it by `ordersaga projections rebuild`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite keeps the time as text; this is the text SQLAlchemy's SQLite DATETIME writes
        # ("2026-11-30 04:05:06.000000", UTC), made in one step: every saga step writes a dozen,
        # most of them the one time its transaction runs at, so the last one made is kept (a pair
        # replaced whole, so any thread reads a value with its own text).
        last: tuple[datetime | None, str | None] = (None, None)

        def to_text(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            made, text = last
            if made is value:
                return text
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            last = (value, text)
            return text

        return to_text

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = String(36)
CODE = String(64)
NAME = String(200)
URL = String(2048)

journal = Table(
    "journal",
    metadata,
    # The primary key is the optimistic lock: two writers cannot both append sequence n.
    Column("saga_id", ID, primary_key=True),
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("type", String(40), nullable=False),
    # The event's format version (persistence/codec.py); entries from before versions were kept are 1.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("data", JSON, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    # The event's place in the whole journal, in commit order (1, 2, 3, ...): what consumers resume
    # from. Given as the entry is inserted, under `journal_head`'s row lock (persistence/write/
    # journal.py); it may be null because releases before that set it after inserting the entry.
    Column("position", BigInteger, nullable=True),
    Index("ix_journal_position", "position", unique=True),
)

journal_head = Table(
    "journal_head",
    metadata,
    # One row: the last position given out. Updating it serialises the commits that append events
    # from that moment to COMMIT, so positions become visible in order: a reader that sees position p
    # sees every position below it (docs/decisions/0019-journal-positions.md).
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
)

staged_faults = Table(
    "staged_faults",
    metadata,
    # The participant faults staged through GraphQL (`serve --enable-fault-injection`), kept here so
    # that every process of a deployment meets the same ones (api/staged_faults.py).
    Column("participant", String(20), primary_key=True),
    Column("delay_ms", Integer, nullable=False),
    # Counted down by whichever process fails the call, so "fail the next 3" means 3 in all.
    Column("fail_next", Integer, nullable=False),
    Column("failure_rate", Float, nullable=False),
    # SHIPMENT only: the warehouse codes whose shipments are refused, a sorted JSON list.
    Column("rejected_warehouses", JSON, nullable=False),
)

relays = Table(
    "relays",
    metadata,
    # What each outbound relay (a webhook endpoint, the event stream) has sent: the journal position
    # up to which it is done, and, with several processes, which process drives it until when
    # (persistence/fleet/relays.py).
    Column("name", NAME, primary_key=True),
    Column("position", BigInteger, nullable=False, server_default="0"),
    Column("owner", NAME, nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    # Where admins asked for journal events to be POSTed (persistence/webhooks.py).
    Column("id", ID, primary_key=True),
    Column("url", Text, nullable=False),
    # The journal event types it takes (a JSON list); NULL for every type.
    Column("events", JSON(none_as_null=True), nullable=True),
    Column("description", Text, nullable=True),
    # The Standard Webhooks signing secret (`whsec_…`): read only to sign, never answered nor logged.
    Column("secret", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False),
    # Why it was disabled when the service disabled it (no success for the whole failing window).
    Column("disabled_reason", Text, nullable=True),
    # Since when every attempt failed; NULL while the last attempt succeeded.
    Column("failing_since", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # An event an endpoint did not take at the first attempt (or one waiting behind such an event of
    # the same saga): what is retried, redelivered and shown to operators. Events taken at once leave
    # no row; the endpoint's relay position says how far it got (persistence/webhooks.py).
    Column("endpoint_id", ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", NAME, nullable=False),
    Column("event_type", String(40), nullable=False),
    Column("saga_id", ID, nullable=False),
    # The exact body sent, so that every attempt sends the same bytes.
    Column("body", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("response_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("error", Text, nullable=True),
    # When this series of attempts first failed: the retry schedule runs from here.
    Column("failing_since", UtcDateTime, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    # Each saga's undelivered events in order, apart from those delivered: what the retries send next.
    Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "status", "saga_id", "position"),
)

placements = Table(
    "placements",
    metadata,
    Column("idempotency_key", NAME, primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("saga_id", ID, nullable=False),
    Column("order_id", ID, nullable=False),
    # NULL for a key scoped to its caller (api/graphql/orders.py's own_key). A key release 0.1.0 bound
    # as the client sent it, before keys were scoped to callers, belongs to its order's customer:
    # this is that customer (migration 0007).
    Column("customer_scope", NAME, nullable=True),
)

request_keys = Table(
    "request_keys",
    metadata,
    # The idempotency keys of receiveStock, adjustStock and dispatchShipment that took effect, each
    # bound in the transaction of its effect (placeOrder's are its placements).
    Column("idempotency_key", NAME, primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("bound_at", UtcDateTime, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("customer_id", NAME, nullable=False),
    Column("status", String(20), nullable=False),
    Column("lines", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("sku", CODE, primary_key=True),
    Column("name", NAME, nullable=False),
    Column("storage_condition", String(20), nullable=False),
)

warehouses = Table(
    "warehouses",
    metadata,
    Column("code", CODE, primary_key=True),
    Column("name", NAME, nullable=False),
    # Where its shipments' commands are sent (a remote warehouse service); None: the built-in
    # warehouse, unless `serve --warehouse-service-url` names one for every warehouse.
    Column("service_url", URL, nullable=True),
)

sections = Table(
    "sections",
    metadata,
    Column("warehouse_code", CODE, ForeignKey("warehouses.code"), primary_key=True),
    Column("code", CODE, primary_key=True),
    Column("storage_condition", String(20), nullable=False),
)

stock = Table(
    "stock",
    metadata,
    # Key order is the fixed order in which reservations touch rows, so two cannot deadlock.
    Column("warehouse_code", CODE, primary_key=True),
    Column("section_code", CODE, primary_key=True),
    Column("sku", CODE, ForeignKey("products.sku"), primary_key=True),
    Column("on_hand", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    # Bumped by every change to the row; a reservation's write is conditional on what is available,
    # not on this.
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(["warehouse_code", "section_code"], ["sections.warehouse_code", "sections.code"]),
    CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
    Index("ix_stock_sku", "sku"),
)

reservations = Table(
    "reservations",
    metadata,
    # The saga's reserve command id: a second reserve with the same id finds this row and acts once.
    Column("id", String(80), primary_key=True),
    Column("order_id", ID, nullable=False),
    Column("picks", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("released_at", UtcDateTime, nullable=True),
    # When its picks left the warehouse with the shipment; a dispatched reservation is never released.
    Column("dispatched_at", UtcDateTime, nullable=True),
)

shipments = Table(
    "shipments",
    metadata,
    # One per warehouse an order's picks come from, under the id its saga gave it (shipment_id_of).
    Column("id", ID, primary_key=True),
    Column("order_id", ID, nullable=False),
    Column("picks", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # domain/model/saga/shipments.py's ShipmentStatus: CREATED, DISPATCHED or CANCELLED.
    Column("status", String(20), nullable=False, server_default="CREATED"),
    Column("dispatched_at", UtcDateTime, nullable=True),
    # Null for a shipment made before shipments were per warehouse (it holds all its order's picks).
    Column("warehouse_code", CODE, nullable=True),
    Index("ix_shipments_order_id", "order_id"),
)

stock_movements = Table(
    "stock_movements",
    metadata,
    # Every change of a section's stock, written in the transaction that makes it: summed per section,
    # the changes are the section's on_hand and reserved.
    Column("id", ID, primary_key=True),
    Column("warehouse_code", CODE, nullable=False),
    Column("section_code", CODE, nullable=False),
    Column("sku", CODE, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("on_hand_change", Integer, nullable=False),
    Column("reserved_change", Integer, nullable=False),
    # The order (reservation, release, dispatch), the adjustment's reason, or none (a receipt).
    Column("reference", NAME, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    # A SKU's movements, newest first, are a keyset scan.
    Index("ix_stock_movements_sku", "sku", "occurred_at", "id"),
)

saga_view = Table(
    "saga_view",
    metadata,
    Column("id", ID, primary_key=True),
    Column("order_id", ID, nullable=False),
    Column("customer_id", NAME, nullable=False),
    Column("status", String(30), nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("current_step", String(30), nullable=True),
    Column("next_wakeup_at", UtcDateTime, nullable=True),
    Column("steps", JSON, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The step whose failure (after its last attempt) sent the saga back or to an operator.
    Column("failed_step", String(30), nullable=True),
    # From start to a terminal status; null until then.
    Column("duration_ms", BigInteger, nullable=True),
    # domain/model/saga/state.py's FailureKind of failure_reason: what failure analysis groups by.
    Column("failure_kind", String(30), nullable=True),
    Index("ix_saga_view_status", "status"),
    # Newest-first pages and time windows are keyset scans over (started_at, id).
    Index("ix_saga_view_started_at", "started_at", "id"),
    Index("ix_saga_view_customer_id", "customer_id"),
)

saga_step_view = Table(
    "saga_step_view",
    metadata,
    # One row per step a saga ran, in the order run: what step metrics aggregate over.
    Column("saga_id", ID, primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("step", String(30), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    # From the first attempt's start to the step's end, retries included; null until it ends.
    Column("duration_ms", BigInteger, nullable=True),
)

saga_timeline = Table(
    "saga_timeline",
    metadata,
    # One row per journal event, with the saga's status after it: what a reader (or a subscriber)
    # needs to show each transition without folding the journal itself.
    Column("saga_id", ID, primary_key=True),
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("type", String(40), nullable=False),
    Column("status", String(30), nullable=False),
    Column("step", String(30), nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    # Who stepped in (the caller's token subject), on the events of an intervention.
    Column("actor", NAME, nullable=True),
    # The role they stepped in as ("customer", "operator", "admin"); null before it was recorded.
    Column("actor_role", String(20), nullable=True),
    # The event's journal position: the feed and the outbound relays read in this order.
    Column("position", BigInteger, nullable=False),
    # Activity per minute reads a window of transitions by time.
    Index("ix_saga_timeline_occurred_at", "occurred_at"),
    Index("ix_saga_timeline_position", "position", unique=True),
)

order_view = Table(
    "order_view",
    metadata,
    Column("id", ID, primary_key=True),
    Column("saga_id", ID, nullable=False),
    Column("customer_id", NAME, nullable=False),
    Column("status", String(20), nullable=False),
    Column("lines", JSON, nullable=False),
    Column("picks", JSON, nullable=False),
    # Its first shipment (in warehouse code order) once CREATE_SHIPMENT succeeded; null until then.
    Column("shipment_id", ID, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # When the last of its shipments was dispatched (the order SHIPPED); null until then.
    Column("shipped_at", UtcDateTime, nullable=True),
    Index("ix_order_view_customer_id", "customer_id"),
    Index("ix_order_view_created_at", "created_at", "id"),
)

shipment_view = Table(
    "shipment_view",
    metadata,
    # Projected from the saga's shipments (SagaState.shipments): one per warehouse, from the start of
    # its CREATE_SHIPMENT step.
    Column("id", ID, primary_key=True),
    Column("order_id", ID, nullable=False),
    Column("saga_id", ID, nullable=False),
    Column("picks", JSON, nullable=False),
    # When the warehouse created it; until it does (or if it never did), when it was requested.
    Column("created_at", UtcDateTime, nullable=False),
    Column("status", String(20), nullable=False, server_default="CREATED"),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Column("warehouse_code", CODE, nullable=False, server_default=""),
    # Why its warehouse refused it; null unless REJECTED.
    Column("reason", Text, nullable=True),
    # A remote warehouse's name for it, once created there.
    Column("reference", NAME, nullable=True),
    # Since when the saga awaits a remote warehouse's answer about it (it answered 202).
    Column("accepted_at", UtcDateTime, nullable=True),
    Index("ix_shipment_view_order_id", "order_id", "warehouse_code"),
)

saga_leases = Table(
    "saga_leases",
    metadata,
    # On PostgreSQL with several processes: the process that drives a running saga, and until when.
    # The owner renews it; once it has expired another process may claim it (persistence/fleet/leases.py).
    Column("saga_id", ID, primary_key=True),
    Column("owner", NAME, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_saga_leases_expires_at", "expires_at"),
    Index("ix_saga_leases_owner", "owner"),
)
