"""What the schema finds once instead of per request changes nothing a request sees: extension hooks
run in strawberry's order on each request's own extensions, concurrent requests included, and input
classes are built as strawberry builds them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext

from api.graphql.coercion import prepare_inputs
from api.graphql.extensions_runner import PreparedExtensionsRunner


class Outer(SchemaExtension):
    log: ClassVar[list[str]] = []

    def on_operation(self) -> Iterator[None]:
        self.log.append("outer in")
        yield
        self.log.append("outer out")


class Inner(SchemaExtension):
    """Reads its request's context after yielding to other requests, on both sides of its hook."""

    seen: ClassVar[list[tuple[str | None, str | None]]] = []

    def on_operation(self) -> Iterator[None]:
        Outer.log.append("inner in")
        yield
        Outer.log.append("inner out")

    async def on_execute(self) -> AsyncIterator[None]:
        before = self.execution_context.variables or {}
        await asyncio.sleep(0)
        yield
        await asyncio.sleep(0)
        after = self.execution_context.variables or {}
        self.seen.append((before.get("name"), after.get("name")))

    def get_results(self) -> dict[str, Any]:
        return {"inner": True}


@strawberry.input
class LineInput:
    sku_code: str
    quantity: int = 1


@strawberry.input
class OrderInput:
    lines: list[LineInput]
    note: str | None
    tags: list[str] = strawberry.field(default_factory=list)
    reference: str = strawberry.field(name="ref", default="none")


@strawberry.type
class Query:
    @strawberry.field
    def echo(self, name: str) -> str:
        return name

    @strawberry.field
    def order(self, order: OrderInput) -> str:
        return repr(order)


class PreparedSchema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return PreparedExtensionsRunner(execution_context, extensions)


async def test_hooks_run_in_order_on_each_requests_own_extensions() -> None:
    schema = PreparedSchema(query=Query, extensions=[Outer, Inner])
    query = "query ($name: String!) { echo(name: $name) }"
    await schema.execute(query, {"name": "alone"})
    assert Outer.log == ["outer in", "inner in", "inner out", "outer out"]
    results = await asyncio.gather(*(schema.execute(query, {"name": f"n{i}"}) for i in range(5)))
    assert [r.data for r in results] == [{"echo": f"n{i}"} for i in range(5)]
    assert all(r.extensions == {"inner": True} for r in results)
    assert sorted(Inner.seen) == [("alone", "alone")] + [(f"n{i}", f"n{i}") for i in range(5)]


class PlainHooks(SchemaExtension):
    """Hooks written as plain functions, which strawberry runs before the step, sync or async."""

    log: ClassVar[list[str]] = []

    def on_operation(self) -> None:  # type: ignore[override]
        self.log.append("operation")

    async def on_execute(self) -> None:  # type: ignore[override]
        self.log.append("execute")


async def test_hooks_written_as_plain_functions_run_as_strawberry_runs_them() -> None:
    query = '{ echo(name: "x") }'
    plain = await strawberry.Schema(query=Query, extensions=[PlainHooks, Outer]).execute(query)
    expected, PlainHooks.log[:] = list(PlainHooks.log), []
    prepared = await PreparedSchema(query=Query, extensions=[PlainHooks, Outer]).execute(query)
    assert prepared.errors is None and prepared.data == plain.data == {"echo": "x"}
    assert PlainHooks.log == expected == ["operation", "execute"]


async def test_input_classes_are_built_as_strawberry_builds_them() -> None:
    query = """{
      a: order(order: {lines: [{skuCode: "X"}, {skuCode: "Y", quantity: 3}], note: null})
      b: order(order: {lines: [], note: "n", tags: ["t"], ref: "r"})
      c: order(order: {lines: []})
    }"""
    plain = await strawberry.Schema(query=Query).execute(query)
    prepared = strawberry.Schema(query=Query)
    prepare_inputs(prepared)
    assert OrderInput.__strawberry_definition__.from_input is not None  # type: ignore[attr-defined]
    assert (await prepared.execute(query)).data == plain.data
    assert plain.data is not None and "sku_code='Y', quantity=3" in plain.data["a"]
