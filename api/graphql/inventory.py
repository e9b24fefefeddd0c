"""Inventory administration and stock queries: warehouses, sections, products, receipts, and how
contended stock reservations are."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from api.graphql.enums import StorageCondition
from api.graphql.idempotency import KEY_DESCRIPTION, KEY_REUSED, check_key, keyed
from api.graphql.node_ids import catalog_id
from api.graphql.types import (
    Input,
    InventoryContention,
    Product,
    Section,
    StockLevel,
    UserError,
    Warehouse,
    service,
    user_errors,
    user_errors_field,
)
from api.outbound.addresses import reach_problem, url_problem
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
from persistence.read.catalog import stock_levels_query, warehouses_query
from persistence.read.rows import StockLevelRow, WarehouseStockRow
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


SERVICE_URL_DESCRIPTION = (
    "The remote warehouse service that creates and cancels its shipments, an http or https URL "
    "(INVALID_URL) whose host resolves to public addresses only, unless the server runs with "
    "--allow-private-warehouse-urls; loopback in development mode (URL_NOT_ALLOWED); commands are "
    "POSTed to it, signed (SIGNING_NOT_CONFIGURED when the service has no secret to sign with). Null: "
    "the built-in warehouse, or the one serve --warehouse-service-url names."
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
    service_url: str | None = strawberry.field(default=None, description=SERVICE_URL_DESCRIPTION)


@strawberry.input(description="What to change of a warehouse; a field left out stays as it is.")
class UpdateWarehouseInput:
    code: str = strawberry.field(description="The warehouse (UNKNOWN_WAREHOUSE if none).")
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description=f"Its new name, at most {MAX_TEXT} characters; not null."
    )
    service_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description=SERVICE_URL_DESCRIPTION + " Null takes its own away: its next commands go to the "
        "service `serve --warehouse-service-url` names, if any, else to the built-in warehouse. Takes "
        "effect for commands sent from a second after the change, in every process, those of shipments "
        "already sent elsewhere included: change it only while none of its shipments awaits an answer.",
    )


@strawberry.type(description="The warehouse as changed, or why the change was refused.")
class UpdateWarehousePayload:
    warehouse: Warehouse | None = strawberry.field(
        default=None, description="The warehouse now; null when refused."
    )
    user_errors: list[UserError] = user_errors_field()


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
        return [StockLevel.from_row(r) for r in await service(info).catalog.stock_levels(sku)]

    @strawberry.field(description="Every warehouse with its sections and the stock each section holds.")
    async def warehouses(self, info: Info) -> list[Warehouse]:
        return Warehouse.from_rows(await service(info).catalog.warehouses())

    @strawberry.field(description="Every product, with its stock summed over all warehouse sections.")
    async def products(self, info: Info) -> list[Product]:
        return [Product.from_row(r) for r in await service(info).catalog.products()]

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
        "INVALID_TEXT, DUPLICATE_SECTION, DUPLICATE_WAREHOUSE, INVALID_URL, URL_NOT_ALLOWED, "
        "SIGNING_NOT_CONFIGURED."
    )
    async def register_warehouse(
        self, info: Info, input: Input[RegisterWarehouseInput]
    ) -> RegisterWarehousePayload:
        problems = check_text(input.code, "code", MAX_CODE) + check_text(input.name, "name", MAX_TEXT)
        problems += await _service_url_problems(service(info), input.service_url)
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
                lambda conn: catalog.register_warehouse(
                    conn, input.code, input.name, sections, input.service_url
                )
            )
        if problems:
            return RegisterWarehousePayload(user_errors=user_errors(problems))
        service(info).warehouses.learn(input.code, input.service_url)
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
                service_url=input.service_url,
            )
        )

    @strawberry.mutation(
        description="Change a warehouse's name or its remote warehouse service. Refusals, in "
        "userErrors: UNKNOWN_WAREHOUSE, REQUIRED, TOO_LONG, INVALID_TEXT, INVALID_URL, URL_NOT_ALLOWED, "
        "SIGNING_NOT_CONFIGURED."
    )
    async def update_warehouse(
        self, info: Info, input: Input[UpdateWarehouseInput]
    ) -> UpdateWarehousePayload:
        svc = service(info)
        changes: dict[str, str | None] = {}
        problems = check_text(input.code, "code", MAX_CODE)
        if input.name is not strawberry.UNSET:
            problems += check_text(input.name or "", "name", MAX_TEXT)
            changes["name"] = input.name
        if input.service_url is not strawberry.UNSET:
            problems += await _service_url_problems(svc, input.service_url)
            changes["service_url"] = input.service_url
        rows: list[WarehouseStockRow] = []

        async def update(conn: Db) -> list[Problem]:
            # The warehouse as this transaction leaves it is its answer, read within it: a read after
            # the commit could fail, and the change be answered as not made.
            found = await catalog.update_warehouse(conn, input.code, changes)
            if not found:
                result = await conn.execute(warehouses_query([input.code]))
                rows[:] = [WarehouseStockRow(**row._mapping) for row in result.all()]
            return found

        if not problems:
            problems = await svc.write(update)
        if problems:
            return UpdateWarehousePayload(user_errors=user_errors(problems))
        if "service_url" in changes:
            svc.warehouses.learn(input.code, changes["service_url"])
        (warehouse,) = Warehouse.from_rows(rows)
        return UpdateWarehousePayload(warehouse=warehouse)

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
            svc = service(info)
            problems = await svc.write(
                lambda conn: catalog.register_product(conn, input.sku, input.name, condition)
            )
            if all(problem.code is ProblemCode.DUPLICATE_PRODUCT for problem in problems):
                svc.catalog.learn_sku(input.sku)  # registered, now or before
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
            answer = await _stock_write(
                svc,
                request,
                lambda conn: catalog.receive_stock(
                    conn, input.sku, input.warehouse_code, input.section_code, input.quantity, svc.clock.now()
                ),
                input.sku,
                (input.warehouse_code, input.section_code),
            )
            if isinstance(answer, StockLevel):
                return ReceiveStockPayload(stock_level=answer)
            problems = answer
        return ReceiveStockPayload(user_errors=user_errors(problems))

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
            answer = await _stock_write(
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
                (input.warehouse_code, input.section_code),
            )
            if isinstance(answer, StockLevel):
                return AdjustStockPayload(stock_level=answer)
            problems = answer
        return AdjustStockPayload(user_errors=user_errors(problems))


async def _stock_write(
    svc: Service,
    request: KeyedRequest | None,
    write: Callable[[Db], Awaitable[list[Problem]]],
    sku: str,
    place: tuple[str, str],
) -> StockLevel | list[Problem]:
    """`write` to `sku`'s stock in `place` (a warehouse and a section code) under `request`'s key:
    why it changed nothing, or the section's level as its own transaction left it. The level is read
    in that transaction, so that a committed write has its answer in hand: read after the commit, a
    failing read would answer SERVICE_UNAVAILABLE ("nothing was done, send it again") for a change
    that was made, and sent again without a key it would be made twice. A replay, which changes
    nothing, answers the level as it stands, as the first request did."""
    levels: list[StockLevelRow] = []

    async def work(conn: Db) -> list[Problem]:
        problems = await write(conn)
        if not problems:
            rows = (await conn.execute(stock_levels_query(sku, place))).all()
            levels[:] = [StockLevelRow(**row._mapping) for row in rows]
        return problems

    try:
        problems = await svc.write_once(request, work, lock_order=sku)
    except IdempotencyKeyReused:
        return [KEY_REUSED]
    if problems:
        return problems
    if problems is None:  # a replay: this request wrote nothing
        levels = await svc.catalog.stock_levels(sku, place)
    return StockLevel.from_row(levels[0])


async def _service_url_problems(svc: Service, url: str | None) -> list[Problem]:
    """Why `url` cannot be a warehouse's serviceUrl: not a URL a command may go to (INVALID_URL), or
    one leading to an address this service may not send to (URL_NOT_ALLOWED, as a webhook's;
    `--allow-private-warehouse-urls` lets it), or commands would go unsigned (SIGNING_NOT_CONFIGURED)."""
    if url is None:
        return []
    if (problem := url_problem(url)) is not None:
        return [Problem(ProblemCode.INVALID_URL, "serviceUrl", problem.replace("url ", "serviceUrl ", 1))]
    if (problem := await reach_problem(url, svc.warehouses.reach)) is not None:
        return [Problem(ProblemCode.URL_NOT_ALLOWED, "serviceUrl", problem)]
    if not svc.warehouses.signs:
        message = "serve with --warehouse-service-secret-file to give a warehouse a serviceUrl"
        return [Problem(ProblemCode.SIGNING_NOT_CONFIGURED, "serviceUrl", message)]
    return []
