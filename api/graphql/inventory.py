"""Inventory administration and stock queries: warehouses, sections, products, receipts, and how
contended stock reservations are."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from api.graphql.idempotency import KEY_DESCRIPTION, KEY_REUSED, check_key, keyed
from api.graphql.node_ids import catalog_id
from api.graphql.types import (
    Input,
    InventoryContention,
    Product,
    Section,
    StockLevel,
    StorageCondition,
    UserError,
    Warehouse,
    service,
    user_errors,
    user_errors_field,
)
from domain.model.problems import (
    MAX_CODE,
    MAX_TEXT,
    Problem,
    ProblemCode,
    check_quantity,
    check_stock_delta,
    check_text,
)
from domain.model.values import StorageCondition as DomainStorageCondition
from domain.ports import IdempotencyKeyReused
from persistence.write import catalog

if TYPE_CHECKING:
    from api.service import Service
    from domain.ports import KeyedRequest
    from persistence.connection import Db


@strawberry.input(description="A section of a new warehouse.")
class SectionInput:
    code: str = strawberry.field(
        description=f"Its code, unique within the warehouse, at most {MAX_CODE} characters."
    )
    storage_condition: StorageCondition = strawberry.field(  # type: ignore[valid-type]
        description="How it keeps goods: only products with this condition are stocked in it."
    )


@strawberry.input(description="A new warehouse and its sections.")
class RegisterWarehouseInput:
    code: str = strawberry.field(
        description=f"Its code, unique among warehouses (DUPLICATE_WAREHOUSE), at most {MAX_CODE} characters."
    )
    name: str = strawberry.field(description=f"Its name, for people, at most {MAX_TEXT} characters.")
    sections: list[SectionInput] = strawberry.field(
        description="Its sections, each code once (DUPLICATE_SECTION)."
    )


@strawberry.type(description="The warehouse registered, or why it was refused.")
class RegisterWarehousePayload:
    warehouse: Warehouse | None = strawberry.field(
        default=None, description="The new warehouse; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.input(description="A new product.")
class RegisterProductInput:
    sku: str = strawberry.field(
        description=f"Its SKU, unique among products (DUPLICATE_PRODUCT), at most {MAX_CODE} characters."
    )
    name: str = strawberry.field(description=f"Its name, for people, at most {MAX_TEXT} characters.")
    storage_condition: StorageCondition = strawberry.field(  # type: ignore[valid-type]
        description="How it must be kept: it can be stocked only in sections with this condition."
    )


@strawberry.type(description="The product registered, or why it was refused.")
class RegisterProductPayload:
    product: Product | None = strawberry.field(
        default=None, description="The new product, with no stock yet; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.input(description="Goods that came in to one section.")
class ReceiveStockInput:
    sku: str = strawberry.field(description="The product's SKU (UNKNOWN_SKU if none).")
    warehouse_code: str = strawberry.field(description="The warehouse (UNKNOWN_WAREHOUSE if none).")
    section_code: str = strawberry.field(
        description="The section, which must keep goods as the product needs (UNKNOWN_SECTION, "
        "CONDITION_MISMATCH)."
    )
    quantity: int = strawberry.field(description="Units received, 1 to 1000000 (INVALID_QUANTITY).")
    idempotency_key: str | None = strawberry.field(default=None, description=KEY_DESCRIPTION)


@strawberry.type(description="The section's stock after the receipt, or why it was refused.")
class ReceiveStockPayload:
    stock_level: StockLevel | None = strawberry.field(
        default=None, description="The section's stock of the product now; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.input(description="A correction of one section's stock on hand.")
class AdjustStockInput:
    sku: str = strawberry.field(description="The product's SKU; the section must hold some (UNKNOWN_SKU).")
    warehouse_code: str = strawberry.field(description="The warehouse.")
    section_code: str = strawberry.field(description="The section of that warehouse.")
    quantity_delta: int = strawberry.field(description="Units on hand to add, or (negative) take away.")
    reason: str = strawberry.field(description="Why: a cycle count, damage, a write-off. Required.")
    idempotency_key: str | None = strawberry.field(default=None, description=KEY_DESCRIPTION)


@strawberry.type(description="The section's stock after the adjustment, or why it was refused.")
class AdjustStockPayload:
    stock_level: StockLevel | None = strawberry.field(
        default=None, description="The section's stock of the product now; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()


@strawberry.type
class InventoryQueries:
    @strawberry.field(description="Stock of one SKU in every warehouse section that holds it.")
    async def stock_levels(
        self, info: Info, sku: Annotated[str, strawberry.argument(description="The product's SKU.")]
    ) -> list[StockLevel]:
        return [StockLevel.from_row(r) for r in await service(info).read.stock_levels(sku)]

    @strawberry.field(description="Every warehouse with its sections and the stock each section holds.")
    async def warehouses(self, info: Info) -> list[Warehouse]:
        return Warehouse.from_rows(await service(info).read.warehouses())

    @strawberry.field(description="Every product, with its stock summed over all warehouse sections.")
    async def products(self, info: Info) -> list[Product]:
        return [Product.from_row(r) for r in await service(info).read.products()]

    @strawberry.field(
        description="Contention on stock rows, as seen by this server process since it started."
    )
    def inventory_contention(self, info: Info) -> InventoryContention:
        metrics = service(info).metrics
        return InventoryContention(
            stock_reservations=metrics.stock_reservations,
            stock_conflicts=metrics.stock_conflicts,
            stock_conflicts_exhausted=metrics.stock_conflicts_exhausted,
            cas_conflicts=metrics.stock_conflicts,
            cas_conflicts_exhausted=metrics.stock_conflicts_exhausted,
        )


@strawberry.type
class InventoryMutations:
    @strawberry.mutation(
        description="Register a warehouse with its sections. Refusals, in userErrors: REQUIRED, TOO_LONG, "
        "INVALID_TEXT, DUPLICATE_SECTION, DUPLICATE_WAREHOUSE."
    )
    async def register_warehouse(
        self, info: Info, input: Input[RegisterWarehouseInput]
    ) -> RegisterWarehousePayload:
        problems = check_text(input.code, "code", MAX_CODE) + check_text(input.name, "name", MAX_TEXT)
        seen: set[str] = set()
        for i, section in enumerate(input.sections):
            field = f"sections[{i}].code"
            problems += check_text(section.code, field, MAX_CODE)
            if section.code in seen:
                problems.append(
                    Problem(ProblemCode.DUPLICATE_SECTION, field, f"section {section.code} is listed twice")
                )
            seen.add(section.code)
        sections = [(s.code, DomainStorageCondition(s.storage_condition)) for s in input.sections]
        if not problems:
            problems = await service(info).write(
                lambda conn: catalog.register_warehouse(conn, input.code, input.name, sections)
            )
        if problems:
            return RegisterWarehousePayload(user_errors=user_errors(problems))
        return RegisterWarehousePayload(
            warehouse=Warehouse(
                id=strawberry.ID(catalog_id("Warehouse", input.code)),
                code=input.code,
                name=input.name,
                sections=[
                    Section(
                        id=strawberry.ID(catalog_id("Section", input.code, code)),
                        code=code,
                        storage_condition=condition,
                        stock=[],
                    )
                    for code, condition in sections
                ],
            )
        )

    @strawberry.mutation(
        description="Register a product, with no stock yet. Refusals, in userErrors: REQUIRED, TOO_LONG, "
        "INVALID_TEXT, DUPLICATE_PRODUCT."
    )
    async def register_product(
        self, info: Info, input: Input[RegisterProductInput]
    ) -> RegisterProductPayload:
        condition = DomainStorageCondition(input.storage_condition)
        problems = check_text(input.sku, "sku", MAX_CODE) + check_text(input.name, "name", MAX_TEXT)
        if not problems:
            problems = await service(info).write(
                lambda conn: catalog.register_product(conn, input.sku, input.name, condition)
            )
        if problems:
            return RegisterProductPayload(user_errors=user_errors(problems))
        return RegisterProductPayload(
            product=Product(
                id=strawberry.ID(catalog_id("Product", input.sku)),
                sku=input.sku,
                name=input.name,
                storage_condition=condition,
                on_hand=0,
                reserved=0,
            )
        )

    @strawberry.mutation(
        description="Goods came in: quantity more on hand in the section, recorded as a RECEIPT movement. "
        "Refusals, in userErrors: INVALID_QUANTITY, UNKNOWN_SKU, UNKNOWN_WAREHOUSE, UNKNOWN_SECTION, "
        "CONDITION_MISMATCH, OUT_OF_RANGE (past 2147483647 on hand), IDEMPOTENCY_KEY_REUSED."
    )
    async def receive_stock(self, info: Info, input: Input[ReceiveStockInput]) -> ReceiveStockPayload:
        svc = service(info)
        problems = check_quantity(input.quantity, "quantity") + check_key(input.idempotency_key)
        if not problems:
            request = keyed(
                info,
                input.idempotency_key,
                "receiveStock",
                sku=input.sku,
                warehouseCode=input.warehouse_code,
                sectionCode=input.section_code,
                quantity=input.quantity,
            )
            problems = await _once(
                svc,
                request,
                lambda conn: catalog.receive_stock(
                    conn, input.sku, input.warehouse_code, input.section_code, input.quantity, svc.clock.now()
                ),
                input.sku,
            )
        if problems:
            return ReceiveStockPayload(user_errors=user_errors(problems))
        return ReceiveStockPayload(
            stock_level=await _level(svc, input.sku, input.warehouse_code, input.section_code)
        )

    @strawberry.mutation(
        description="Correct a section's on-hand (a cycle count, damage, a write-off) by quantityDelta, "
        "recorded as an ADJUSTMENT movement with its reason. Refused, changing nothing, below what the "
        "section holds reserved (BELOW_RESERVED), past 2147483647 (OUT_OF_RANGE), for 0, and for a "
        "section that holds no such stock."
    )
    async def adjust_stock(self, info: Info, input: Input[AdjustStockInput]) -> AdjustStockPayload:
        svc = service(info)
        problems = check_stock_delta(input.quantity_delta, "quantityDelta")
        problems += check_text(input.reason, "reason", MAX_TEXT) + check_key(input.idempotency_key)
        if not problems:
            request = keyed(
                info,
                input.idempotency_key,
                "adjustStock",
                sku=input.sku,
                warehouseCode=input.warehouse_code,
                sectionCode=input.section_code,
                quantityDelta=input.quantity_delta,
                reason=input.reason,
            )
            problems = await _once(
                svc,
                request,
                lambda conn: catalog.adjust_stock(
                    conn,
                    input.sku,
                    input.warehouse_code,
                    input.section_code,
                    input.quantity_delta,
                    input.reason,
                    svc.clock.now(),
                ),
                input.sku,
            )
        if problems:
            return AdjustStockPayload(user_errors=user_errors(problems))
        return AdjustStockPayload(
            stock_level=await _level(svc, input.sku, input.warehouse_code, input.section_code)
        )


async def _once(
    svc: Service, request: KeyedRequest | None, work: Callable[[Db], Awaitable[list[Problem]]], sku: str
) -> list[Problem]:
    """A write to `sku`'s stock under `request`'s key: its problems (none for a replay, which
    answers the stock as it stands, as the first request did)."""
    try:
        return await svc.write_once(request, work, lock_order=sku) or []
    except IdempotencyKeyReused:
        return [KEY_REUSED]


async def _level(svc: Service, sku: str, warehouse_code: str, section_code: str) -> StockLevel:
    """The stock level of one section, as it is now."""
    level = next(
        r
        for r in await svc.read.stock_levels(sku)
        if (r.warehouse_code, r.section_code) == (warehouse_code, section_code)
    )
    return StockLevel.from_row(level)
