"""The GraphQL schema: queries read the read model; mutations validate at the edge, then hand a
command to the orchestrator or the catalog. Refused input comes back as userErrors and changes nothing."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.types import Info

from api.types import (
    Order,
    Product,
    Saga,
    Section,
    StockLevel,
    StorageCondition,
    UserError,
    Warehouse,
    service,
)
from domain.model import OrderLine as DomainOrderLine
from domain.model import StorageCondition as DomainStorageCondition
from domain.orchestrator import PlaceOrder
from domain.ports import IdempotencyKeyReused
from domain.problems import (
    MAX_CODE,
    MAX_LINES,
    MAX_TEXT,
    Problem,
    ProblemCode,
    check_quantity,
    check_text,
)
from persistence import catalog


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int


@strawberry.input
class PlaceOrderInput:
    customer_id: str
    lines: list[OrderLineInput]
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Repeat a request with the same key to get the same order, never a second one.",
    )


@strawberry.type
class PlaceOrderPayload:
    order: Order | None = None
    saga: Saga | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SectionInput:
    code: str
    storage_condition: StorageCondition  # type: ignore[valid-type]


@strawberry.input
class RegisterWarehouseInput:
    code: str
    name: str
    sections: list[SectionInput]


@strawberry.type
class RegisterWarehousePayload:
    warehouse: Warehouse | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RegisterProductInput:
    sku: str
    name: str
    storage_condition: StorageCondition  # type: ignore[valid-type]


@strawberry.type
class RegisterProductPayload:
    product: Product | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ReceiveStockInput:
    sku: str
    warehouse_code: str
    section_code: str
    quantity: int


@strawberry.type
class ReceiveStockPayload:
    stock_level: StockLevel | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _errors(problems: list[Problem]) -> list[UserError]:
    return [UserError.from_problem(p) for p in problems]


@strawberry.type
class Query:
    @strawberry.field
    async def saga(self, info: Info, id: strawberry.ID) -> Saga | None:
        row = await service(info).read.saga(str(id))
        return Saga.from_row(row) if row else None

    @strawberry.field
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        row = await service(info).read.order(str(id))
        return Order.from_row(row) if row else None

    @strawberry.field(description="Stock of one SKU in every warehouse section that holds it.")
    async def stock_levels(self, info: Info, sku: str) -> list[StockLevel]:
        return [StockLevel.from_row(r) for r in await service(info).read.stock_levels(sku)]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Place an order; its saga runs on in the background.")
    async def place_order(self, info: Info, input: PlaceOrderInput) -> PlaceOrderPayload:
        svc = service(info)
        problems = _check_order(input)
        skus = [line.sku for line in input.lines[:MAX_LINES]]
        known = await svc.read.known_skus(skus)
        problems += [
            Problem(ProblemCode.UNKNOWN_SKU, f"lines[{i}].sku", f"no product {sku}")
            for i, sku in enumerate(skus)
            if sku and len(sku) <= MAX_CODE and sku not in known
        ]
        if problems:
            return PlaceOrderPayload(user_errors=_errors(problems))
        command = PlaceOrder(
            customer_id=input.customer_id,
            lines=tuple(DomainOrderLine(x.sku, x.quantity) for x in input.lines),
            idempotency_key=input.idempotency_key,
        )
        try:
            placed = await svc.orchestrator.place_order(command)
        except IdempotencyKeyReused:
            problem = Problem(
                ProblemCode.IDEMPOTENCY_KEY_REUSED,
                "idempotencyKey",
                "this idempotency key was already used for a different order",
            )
            return PlaceOrderPayload(user_errors=_errors([problem]))
        order_row, saga_row = await svc.read.order(placed.order_id), await svc.read.saga(placed.saga_id)
        if order_row is None or saga_row is None:
            raise GraphQLError("the order was placed but cannot be read back")
        return PlaceOrderPayload(order=Order.from_row(order_row), saga=Saga.from_row(saga_row))

    @strawberry.mutation
    async def register_warehouse(self, info: Info, input: RegisterWarehouseInput) -> RegisterWarehousePayload:
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
            return RegisterWarehousePayload(user_errors=_errors(problems))
        return RegisterWarehousePayload(
            warehouse=Warehouse(
                code=input.code,
                name=input.name,
                sections=[Section(code=code, storage_condition=condition) for code, condition in sections],
            )
        )

    @strawberry.mutation
    async def register_product(self, info: Info, input: RegisterProductInput) -> RegisterProductPayload:
        condition = DomainStorageCondition(input.storage_condition)
        problems = check_text(input.sku, "sku", MAX_CODE) + check_text(input.name, "name", MAX_TEXT)
        if not problems:
            problems = await service(info).write(
                lambda conn: catalog.register_product(conn, input.sku, input.name, condition)
            )
        if problems:
            return RegisterProductPayload(user_errors=_errors(problems))
        return RegisterProductPayload(
            product=Product(sku=input.sku, name=input.name, storage_condition=condition)
        )

    @strawberry.mutation
    async def receive_stock(self, info: Info, input: ReceiveStockInput) -> ReceiveStockPayload:
        svc = service(info)
        problems = check_quantity(input.quantity, "quantity")
        if not problems:
            problems = await svc.write(
                lambda conn: catalog.receive_stock(
                    conn, input.sku, input.warehouse_code, input.section_code, input.quantity
                )
            )
        if problems:
            return ReceiveStockPayload(user_errors=_errors(problems))
        level = next(
            r
            for r in await svc.read.stock_levels(input.sku)
            if (r.warehouse_code, r.section_code) == (input.warehouse_code, input.section_code)
        )
        return ReceiveStockPayload(stock_level=StockLevel.from_row(level))


def _check_order(order: PlaceOrderInput) -> list[Problem]:
    problems = check_text(order.customer_id, "customerId", MAX_TEXT)
    if order.idempotency_key is not None:
        problems += check_text(order.idempotency_key, "idempotencyKey", MAX_TEXT)
    if not order.lines:
        problems.append(Problem(ProblemCode.NO_LINES, "lines", "an order needs at least one line"))
    if len(order.lines) > MAX_LINES:
        problems.append(
            Problem(ProblemCode.TOO_MANY_LINES, "lines", f"an order has at most {MAX_LINES} lines")
        )
    for i, line in enumerate(order.lines[:MAX_LINES]):
        problems += check_text(line.sku, f"lines[{i}].sku", MAX_CODE)
        problems += check_quantity(line.quantity, f"lines[{i}].quantity")
    return problems


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    # Factories: a fresh extension per request; the parse and validation caches live at module level,
    # so they still serve every request. Bounded, so unique query texts cannot grow memory.
    extensions=[
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
        lambda: QueryDepthLimiter(max_depth=12),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: MaxAliasesLimiter(max_alias_count=30),
    ],
)
