"""What every reader of the read side shares: its engine, and one statement per connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class Reader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def ping(self) -> None:
        """Raises unless the database answers."""
        await self._one(text("SELECT 1"))

    async def _count(self, query: object) -> int:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()  # type: ignore[call-overload,no-any-return]

    async def _one(self, query: object) -> Row | None:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()  # type: ignore[call-overload]

    async def _all(self, query: object) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).all()  # type: ignore[call-overload]

    async def _typed_one(self, query: object, row: Callable[..., T]) -> T | None:
        """The first row of `query` as `row(**columns)` (a class of persistence/read/rows.py)."""
        found = await self._one(query)
        return None if found is None else _typed(found, row)

    async def _typed_all(self, query: object, row: Callable[..., T]) -> list[T]:
        """Every row of `query` as `row(**columns)`."""
        return [_typed(found, row) for found in await self._all(query)]


def _typed(found: Row[Any], row: Callable[..., T]) -> T:
    return row(**found._mapping)
