"""The executor of the fast paths (`RenderOnce`) drops graphql-core's reference cycle once its
operation is done, but not while fields still settle in the background: the siblings of a field
whose error ended their selection are settled after the answer, and still resolve their own fields."""

from __future__ import annotations

import asyncio

import strawberry

from api.graphql.renditions import RenderOnce

resolved: list[str] = []


@strawberry.type
class Leaf:
    @strawberry.field
    def name(self) -> str:
        resolved.append("name")
        return "leaf"


@strawberry.type
class Query:
    @strawberry.field
    async def slow(self) -> Leaf | None:
        await asyncio.sleep(0.01)
        return Leaf()

    @strawberry.field
    def broken(self) -> str:
        raise RuntimeError("a non-null field fails, and ends the selection it is in")


async def test_a_field_settled_after_the_answer_still_resolves_its_own_fields() -> None:
    schema = strawberry.Schema(query=Query, execution_context_class=RenderOnce)
    resolved.clear()
    result = await schema.execute("{ slow { name } broken }")
    assert result.data is None and result.errors
    for _ in range(100):
        if resolved:
            break
        await asyncio.sleep(0.01)
    assert resolved == ["name"]
