"""GraphQL types. They are built from read-model rows (`from_row`), never from domain objects."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from typing import TYPE_CHECKING, Annotated, Any, Self, TypeVar, get_args

import strawberry
from strawberry.types import Info

from api.access.auth import Principal
from api.access.rules import sees_every_customer, shown_actor
from api.graphql.enums import (
    ErrorCode,
    MovementKind,
    OrderStatus,
    SagaStatus,
    SagaStepName,
    SagaStepStatus,
    ShipmentStatus,
    StorageCondition,
)
from api.graphql.loaders import loaders
from api.graphql.node_ids import catalog_id
from domain.model.problems import Problem
from domain.model.saga import COMPENSATION_OF, Step, StepStatus
from domain.model.saga import SagaEvent as DomainSagaEvent
from domain.model.saga import SagaState as DomainSagaState
from domain.model.saga import SagaStatus as DomainSagaStatus
from domain.model.values import MovementKind as DomainMovementKind
from domain.model.values import OrderStatus as DomainOrderStatus
from domain.model.values import StorageCondition as DomainStorageCondition
from persistence.read import projection
from persistence.read.event_log import encode_cursor
from persistence.read.rows import (
    OrderRow,
    ProductRow,
    SagaRow,
    ShipmentRow,
    StockLevelRow,
    StockMovementRow,
    TransitionRow,
    WarehouseStockRow,
)

if TYPE_CHECKING:
    from api.service import Service

COMPENSATIONS = frozenset(COMPENSATION_OF.values())


def service(info: Info) -> Service:
    return info.context["service"]  # type: ignore[no-any-return]


def principal(info: Info) -> Principal:
    """Who the operation acts for; `api/access/guard.py` has refused every operation without one."""
    who = info.context["identity"]
    assert isinstance(who, Principal)
    return who


@strawberry.type(description="A refused input: a stable code, the input field at fault, and why.")
class UserError:
    code: ErrorCode = strawberry.field(description="What is wrong, for programs.")  # type: ignore[valid-type]
    field: str | None = strawberry.field(
        description="The input field at fault as a path within the input (`lines[0].quantity`); null when "
        "the request as a whole is refused."
    )
    message: str = strawberry.field(description="What is wrong, for people; its wording may change.")

    @classmethod
    def from_problem(cls, problem: Problem) -> UserError:
        return cls(code=problem.code, field=problem.field, message=problem.message)


def user_errors(problems: list[Problem]) -> list[UserError]:
    return [UserError.from_problem(p) for p in problems]


def user_errors_field() -> Any:
    """A payload's `userErrors`: empty unless the input was refused."""
    return strawberry.field(
        default_factory=list,
        description="Why the input was refused, one entry per fault; empty when it was taken. A refused "
        "input changes nothing.",
    )


T = TypeVar("T")
# A mutation's one argument.
Input = Annotated[T, strawberry.argument(description="What to do; its type describes each field.")]


@strawberry.type(description="One line of an order: a quantity of one product.")
class OrderLine:
    sku: str = strawberry.field(description="The product's SKU.")
    quantity: int = strawberry.field(description="Units ordered, 1 to 1000000.")


@strawberry.type(description="A quantity of one SKU taken from one section of one warehouse.")
class Pick:
    warehouse_code: str = strawberry.field(description="The warehouse it comes from.")
    section_code: str = strawberry.field(description="The section of that warehouse it comes from.")
    sku: str = strawberry.field(description="The product's SKU.")
    quantity: int = strawberry.field(description="Units, at least 1.")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pick:
        return cls(
            warehouse_code=data["warehouseCode"],
            section_code=data["sectionCode"],
            sku=data["sku"],
            quantity=data["quantity"],
        )


@strawberry.interface(
    description="An object found by its id alone, with `node(id:)`: a global id, unique across all types. "
    "Saga, order and shipment ids are UUIDs; catalog ids are opaque."
)
class Node:
    id: strawberry.ID = strawberry.field(description="The global id; `node(id:)` finds the object by it.")


@strawberry.type(
    description="The instruction to one warehouse to ship its part of an order: where each pick comes from."
)
class Shipment(Node):
    id: strawberry.ID = strawberry.field(description="The global id, a UUID; `node(id:)` finds it by it.")
    warehouse_code: str = strawberry.field(description="The warehouse all its picks come from.")
    picks: list[Pick] = strawberry.field(
        description="What to take from where: the stock its order reserved in this warehouse, section by "
        "section."
    )
    created_at: datetime = strawberry.field(
        description="When the warehouse created it; until it has, when it was requested."
    )
    status: ShipmentStatus = strawberry.field(description="Where it is.")
    dispatched_at: datetime | None = strawberry.field(
        description="When the warehouse dispatched it (its picks left their sections); null until then."
    )
    reason: str | None = strawberry.field(description="Why its warehouse refused it; null unless REJECTED.")
    reference: str | None = strawberry.field(
        description="What a remote warehouse service calls it, as it answered; null for the built-in "
        "warehouse, and until created."
    )
    awaiting_since: datetime | None = strawberry.field(
        description="Since when the saga awaits a remote warehouse's answer about it: the warehouse "
        "accepted its command (HTTP 202) and reports the outcome later (reportShipmentOutcome), until the "
        "step's deadline. Null otherwise."
    )

    @classmethod
    def from_row(cls, row: ShipmentRow) -> Shipment:
        return cls(
            id=strawberry.ID(row.id),
            warehouse_code=row.warehouse_code,
            picks=[Pick.from_json(p) for p in row.picks],
            created_at=row.created_at,
            status=ShipmentStatus(row.status),
            dispatched_at=row.dispatched_at,
            reason=row.reason,
            reference=row.reference,
            awaiting_since=row.accepted_at,
        )


@strawberry.type(description="A customer's order, which its saga carries from placement to shipment.")
class Order(Node):
    id: strawberry.ID = strawberry.field(description="The global id, a UUID; `node(id:)` finds it by it.")
    status: OrderStatus = strawberry.field(description="Where it is.")  # type: ignore[valid-type]
    customer_id: str = strawberry.field(description="Whose order it is.")
    lines: list[OrderLine] = strawberry.field(description="What was ordered, in the order given.")
    picks: list[Pick] = strawberry.field(
        description="Where its stock is held reserved; empty before the reservation, once the stock is "
        "released (a cancellation, a failure); a pick leaves it with its dispatched shipment."
    )
    created_at: datetime = strawberry.field(
        description="When the order was placed.", deprecation_reason="Use placedAt, which it equals."
    )
    updated_at: datetime = strawberry.field(description="When the order last changed.")
    shipped_at: datetime | None = strawberry.field(
        description="When the last of its shipments was dispatched and the order became SHIPPED; null "
        "until then."
    )
    saga_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: OrderRow) -> Order:
        return cls(
            id=strawberry.ID(row.id),
            status=DomainOrderStatus(row.status),
            customer_id=row.customer_id,
            lines=[OrderLine(sku=x["sku"], quantity=x["quantity"]) for x in row.lines],
            picks=[Pick.from_json(p) for p in row.picks],
            created_at=row.created_at,
            updated_at=row.updated_at,
            shipped_at=row.shipped_at,
            saga_id=row.saga_id,
        )

    @strawberry.field(
        description="When the order was placed; the orders connection's placedAfter and placedBefore "
        "filter on it."
    )
    def placed_at(self) -> datetime:
        return self.created_at

    @strawberry.field(
        description="One per warehouse its picks come from, in warehouse code order; empty until its "
        "shipments are requested."
    )
    async def shipments(self, info: Info) -> list[Shipment]:
        return [Shipment.from_row(row) for row in await loaders(info).shipments.load(str(self.id))]

    @strawberry.field(
        description="Its first shipment (in warehouse code order); null until its shipments are requested.",
        deprecation_reason="An order has one shipment per warehouse: use shipments.",
    )
    async def shipment(self, info: Info) -> Shipment | None:
        rows = await loaders(info).shipments.load(str(self.id))
        return Shipment.from_row(rows[0]) if rows else None

    @strawberry.field(description="The saga that carries the order.")
    async def saga(self, info: Info) -> Annotated[Saga, strawberry.lazy("api.graphql.types")] | None:
        row = await loaders(info).sagas.load(self.saga_id)
        return Saga.from_row(row) if row else None


@strawberry.type(description="A step of a saga as it ran: its attempts and how the latest went.")
class SagaStep:
    name: SagaStepName = strawberry.field(description="Which step.")  # type: ignore[valid-type]
    status: SagaStepStatus = strawberry.field(description="How its latest attempt went.")  # type: ignore[valid-type]
    attempts: int = strawberry.field(description="Attempts started, 1 or more (retries count).")
    started_at: datetime = strawberry.field(description="When its first attempt started.")
    finished_at: datetime | None = strawberry.field(
        description="When it ended (succeeded, failed for good, abandoned); null while it runs or retries."
    )
    last_error: str | None = strawberry.field(
        description="Why its latest failed attempt failed; null if none."
    )


@strawberry.type(description="One entry of a saga's journal, with the saga's status right after it.")
class SagaEvent:
    sequence: int = strawberry.field(description="Its place in the saga's journal, from 1, without gaps.")
    type: str = strawberry.field(
        description="What happened, as the journal names it: "
        + ", ".join(kind.type_name for kind in get_args(DomainSagaEvent))
        + "."
    )
    status: SagaStatus = strawberry.field(description="The saga's status right after it.")  # type: ignore[valid-type]
    occurred_at: datetime = strawberry.field(description="When it was recorded.")
    step: SagaStepName | None = strawberry.field(  # type: ignore[valid-type]
        description="The step it is about; null for events of the whole saga."
    )
    attempt: int | None = strawberry.field(
        description="The step's attempt it is about, from 1; null if none."
    )
    reason: str | None = strawberry.field(
        description="Why, on failures, aborts and cancellations; null on other events."
    )
    actor_subject: strawberry.Private[str | None]
    actor_role: strawberry.Private[str | None]
    saga_id: strawberry.Private[str]
    # The event's place in the whole journal, in commit order (docs/decisions/0019-journal-positions.md).
    position: strawberry.Private[int]
    cursor: str = strawberry.field(
        description="Where this event stands in the whole journal, as an opaque cursor: pass it as "
        "`after` to `sagaFeed` or `journalEvents` to go on from just after this event."
    )

    @strawberry.field(
        description="Who stepped in, on SagaRetried, SagaAborted and CustomerCancelled: for staff, the "
        "subject of their token; for a customer, itself as itself and anyone else as the role they "
        "acted in (operator, admin; staff if recorded before roles were kept). Null on other events "
        "and on those recorded before it was kept."
    )
    def actor(self, info: Info) -> str | None:
        return shown_actor(principal(info), self.actor_subject, self.actor_role)

    @classmethod
    def from_row(cls, row: TransitionRow, **private: Any) -> Self:
        """The event of a saga_timeline row; `private` sets a subclass's private fields."""
        return cls(
            saga_id=row.saga_id,
            sequence=row.sequence,
            type=row.type,
            status=DomainSagaStatus(row.status),
            occurred_at=row.occurred_at,
            step=Step(row.step) if row.step else None,
            attempt=row.attempt,
            reason=row.reason,
            actor_subject=row.actor,
            actor_role=row.actor_role,
            position=row.position,
            cursor=encode_cursor(row.position),
            **private,
        )


@strawberry.type(description="A running saga's lease: the one process that may drive it, and until when.")
class SagaLease:
    owner: str = strawberry.field(description="The owning process's instance name (host:pid by default).")
    expires_at: datetime = strawberry.field(
        description="When the lease ends unless its owner renews it (it does every third of the lease "
        "time); past it, another process takes the saga over."
    )


@strawberry.type(
    description="The durable process that carries one order: its steps, their compensations, and its journal."
)
class Saga(Node):
    id: strawberry.ID = strawberry.field(description="The global id, a UUID; `node(id:)` finds it by it.")
    status: SagaStatus = strawberry.field(description="Where it is.")  # type: ignore[valid-type]
    failure_reason: str | None = strawberry.field(
        description="Why the saga turned back; while it needs attention, why it does."
    )
    current_step: SagaStepName | None = strawberry.field(  # type: ignore[valid-type]
        description="The step running or last run; null before the first."
    )
    steps: list[SagaStep] = strawberry.field(
        description="Every step it ran, forward steps and compensations, in the order they started."
    )
    started_at: datetime = strawberry.field(
        description="When it started (when its order was placed); the sagas connection's startedAfter "
        "and startedBefore filter on it."
    )
    updated_at: datetime = strawberry.field(description="When it last changed.")
    order_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: SagaRow) -> Saga:
        return cls(
            id=strawberry.ID(row.id),
            status=DomainSagaStatus(row.status),
            failure_reason=row.failure_reason,
            current_step=Step(row.current_step) if row.current_step else None,
            steps=[
                SagaStep(
                    name=Step(s["name"]),
                    status=StepStatus(s["status"]),
                    attempts=s["attempts"],
                    started_at=datetime.fromisoformat(s["startedAt"]),
                    finished_at=datetime.fromisoformat(s["finishedAt"]) if s["finishedAt"] else None,
                    last_error=s["lastError"],
                )
                for s in row.steps
            ],
            started_at=row.started_at,
            updated_at=row.updated_at,
            order_id=row.order_id,
        )

    @strawberry.field(description="The compensation steps, in the order they ran, with their attempts.")
    def compensations(self) -> list[SagaStep]:
        return [s for s in self.steps if s.name in COMPENSATIONS]

    @strawberry.field(description="The order it carries.")
    async def order(self, info: Info) -> Order | None:
        row = await loaders(info).orders.load(self.order_id)
        return Order.from_row(row) if row else None

    @strawberry.field(description="The saga's journal, in sequence order.")
    async def events(self, info: Info) -> list[SagaEvent]:
        return [SagaEvent.from_row(r) for r in await loaders(info).timelines.load(str(self.id))]

    @strawberry.field(
        description="Which process drives the saga, with several processes over one PostgreSQL; "
        "null when the saga is settled (nothing drives it), on SQLite, where one process drives all, and "
        "to customers, to whom the service's processes are no concern."
    )
    async def lease(self, info: Info) -> SagaLease | None:
        if not sees_every_customer(principal(info)):
            return None
        row = await loaders(info).leases.load(str(self.id))
        return SagaLease(owner=row.owner, expires_at=row.expires_at) if row else None


@strawberry.interface(description="Units of stock: onHand = reserved + available, and none is negative.")
class StockCounts:
    on_hand: int = strawberry.field(description="Units in the warehouse, reserved or not.")
    reserved: int = strawberry.field(description="Units held for orders that have not shipped yet.")

    @strawberry.field(description="What a new reservation can still take.")
    def available(self) -> int:
        return self.on_hand - self.reserved


@strawberry.type(description="The stock of one product in one warehouse section.")
class StockLevel(StockCounts, Node):
    id: strawberry.ID = strawberry.field(description="The global id, opaque; `node(id:)` finds it by it.")
    warehouse_code: str = strawberry.field(description="The warehouse.")
    section_code: str = strawberry.field(description="The section of that warehouse.")
    sku: str = strawberry.field(description="The product's SKU.")

    @classmethod
    def from_row(cls, row: StockLevelRow) -> StockLevel:
        return cls(
            id=strawberry.ID(catalog_id("StockLevel", row.warehouse_code, row.section_code, row.sku)),
            warehouse_code=row.warehouse_code,
            section_code=row.section_code,
            sku=row.sku,
            on_hand=row.on_hand,
            reserved=row.reserved,
        )


@strawberry.type(
    description="One change of a section's stock. A section's movements add up to its onHand and reserved."
)
class StockMovement:
    id: strawberry.ID = strawberry.field(description="The movement's id (a UUID); movements are not nodes.")
    kind: MovementKind = strawberry.field(description="Why the stock changed.")  # type: ignore[valid-type]
    warehouse_code: str = strawberry.field(description="The warehouse.")
    section_code: str = strawberry.field(description="The section of that warehouse.")
    sku: str = strawberry.field(description="The product's SKU.")
    on_hand_change: int = strawberry.field(description="Units on hand added (negative: taken away).")
    reserved_change: int = strawberry.field(description="Units reserved added (negative: given back).")
    reference: str | None = strawberry.field(
        description="The order (reservation, release), the shipment (dispatch), or the adjustment's "
        "reason; none for a receipt."
    )
    occurred_at: datetime = strawberry.field(description="When the stock changed.")

    @classmethod
    def from_row(cls, row: StockMovementRow) -> StockMovement:
        return cls(
            id=strawberry.ID(row.id),
            kind=DomainMovementKind(row.kind),
            warehouse_code=row.warehouse_code,
            section_code=row.section_code,
            sku=row.sku,
            on_hand_change=row.on_hand_change,
            reserved_change=row.reserved_change,
            reference=row.reference,
            occurred_at=row.occurred_at,
        )


@strawberry.type(description="A part of a warehouse that keeps goods under one storage condition.")
class Section(Node):
    id: strawberry.ID = strawberry.field(description="The global id, opaque; `node(id:)` finds it by it.")
    code: str = strawberry.field(description="Its code, unique within its warehouse.")
    storage_condition: StorageCondition = strawberry.field(  # type: ignore[valid-type]
        description="How it keeps goods: only products with this condition are stocked in it."
    )
    stock: list[StockLevel] = strawberry.field(description="The stock this section holds, by SKU.")

    @classmethod
    def from_rows(cls, warehouse_code: str, rows: Iterable[WarehouseStockRow]) -> list[Section]:
        """Sections from one warehouse's `CatalogReads.warehouses` rows."""
        return [
            cls(
                id=strawberry.ID(catalog_id("Section", warehouse_code, code)),
                code=code,
                storage_condition=DomainStorageCondition(condition),
                stock=[StockLevel.from_row(level) for r in held if (level := r.stock_level()) is not None],
            )
            for (code, condition), held in groupby(rows, key=lambda r: (r.section_code, r.storage_condition))
            if code is not None
        ]


@strawberry.type(description="A warehouse, with the sections that hold its stock.")
class Warehouse(Node):
    id: strawberry.ID = strawberry.field(description="The global id, opaque; `node(id:)` finds it by it.")
    code: str = strawberry.field(description="Its code, unique among warehouses.")
    name: str = strawberry.field(description="Its name, for people.")
    sections: list[Section] = strawberry.field(description="Its sections, by code.")
    service_url: str | None = strawberry.field(
        default=None,
        description="The remote warehouse service its shipments' commands are sent to; null: the one "
        "`serve --warehouse-service-url` names, if any, else the built-in warehouse.",
    )

    @classmethod
    def from_rows(cls, rows: Iterable[WarehouseStockRow]) -> list[Warehouse]:
        """Warehouses from `CatalogReads.warehouses` rows: one per stock row in warehouse and section
        order, with NULLs where a warehouse has no section or a section no stock."""
        return [
            cls(
                id=strawberry.ID(catalog_id("Warehouse", code)),
                code=code,
                name=name,
                sections=Section.from_rows(code, held),
                service_url=url,
            )
            for (code, name, url), held in groupby(
                rows, key=lambda r: (r.warehouse_code, r.warehouse_name, r.service_url)
            )
        ]


@strawberry.type(description="A product, with its stock summed over every warehouse section.")
class Product(StockCounts, Node):
    id: strawberry.ID = strawberry.field(description="The global id, opaque; `node(id:)` finds it by it.")
    sku: str = strawberry.field(description="Its stock keeping unit, unique among products.")
    name: str = strawberry.field(description="Its name, for people.")
    storage_condition: StorageCondition = strawberry.field(  # type: ignore[valid-type]
        description="How it must be kept: it is stocked only in sections with this condition."
    )

    @classmethod
    def from_row(cls, row: ProductRow) -> Product:
        return cls(
            id=strawberry.ID(catalog_id("Product", row.sku)),
            sku=row.sku,
            name=row.name,
            storage_condition=DomainStorageCondition(row.storage_condition),
            on_hand=row.on_hand,
            reserved=row.reserved,
        )


@strawberry.type(
    description="Stock reservations and their conflicts, counted by the one server process that answers "
    "since it started (sum them over the processes of a deployment)."
)
class InventoryContention:
    stock_reservations: int = strawberry.field(
        description="Stock reservations attempted; a retried step, or one run again after its batch "
        "failed, counts again."
    )
    stock_conflicts: int = strawberry.field(
        description="Conditional stock writes that found too little left on a row read a moment before "
        "(or the row locked too long), and, on PostgreSQL, stock work that found its row held by another "
        "transaction and stepped aside to queue behind it; the reservation then reads the stock again, "
        "unless its attempts are used up."
    )
    stock_conflicts_exhausted: int = strawberry.field(
        description="Reservations that conflicted on every attempt and were reported as a transient "
        "failure, which the saga retries (never as a shortage)."
    )
    cas_conflicts: int = strawberry.field(
        description="The same count as stockConflicts, under the name it had when reservations were "
        "compare-and-swaps.",
        deprecation_reason="Use stockConflicts: reservations are conditional writes, not compare-and-swaps.",
    )
    cas_conflicts_exhausted: int = strawberry.field(
        description="The same count as stockConflictsExhausted.",
        deprecation_reason="Use stockConflictsExhausted.",
    )


def as_committed(state: DomainSagaState) -> tuple[Saga, Order]:
    """A saga and its order as the transaction that produced `state` projected them: the very rows the
    read model received, without reading them back (nor seeing what the saga did since)."""
    saga = Saga.from_row(SagaRow(**projection.saga_row(state)))
    order = Order.from_row(OrderRow(**projection.order_row(state)))
    return saga, order


def shipment_as_committed(state: DomainSagaState, shipment_id: str) -> Shipment | None:
    """The saga's shipment `shipment_id` as the transaction that produced `state` projected it (see
    as_committed); None if it has none of that id."""
    row = next((r for r in projection.shipment_rows(state) if r["id"] == shipment_id), None)
    return Shipment.from_row(ShipmentRow(**row)) if row else None
