"""What every reader of the read side shares: its engine, and one statement per connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Result, Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.database import ONE_STATEMENT

T = TypeVar("T")


class Reader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # SQLite's reads go without BEGIN (ONE_STATEMENT); elsewhere the option would do nothing.
        self._alone = {ONE_STATEMENT: True} if engine.dialect.name == "sqlite" else None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def ping(self) -> None:
        """Raises unless the database answers."""
        await self._one(text("SELECT 1"))

    async def _count(self, query: object) -> int:
        return await self._read(query, Result.scalar_one)  # type: ignore[no-any-return]

    async def _one(self, query: object) -> Row | None:
        return await self._read(query, Result.first)

    async def _all(self, query: object) -> Sequence[Row]:
        return await self._read(query, Result.all)

    async def _read(self, query: object, take: Callable[[Result[Any]], T]) -> T:
        """`take` of the result of `query`, run alone on a connection of its own."""
        async with self._engine.connect() as conn:
            if self._alone is not None:
                await conn.execution_options(**self._alone)
            return take(await conn.execute(query))  # type: ignore[call-overload]

    async def _typed_one(self, query: object, row: Callable[..., T]) -> T | None:
        """The first row of `query` as `row(**columns)` (a class of persistence/read/rows.py)."""
        found = await self._one(query)
        return None if found is None else _typed(found, row)

    async def _typed_all(self, query: object, row: Callable[..., T]) -> list[T]:
        """Every row of `query` as `row(**columns)`."""
        return [_typed(found, row) for found in await self._all(query)]


def _typed(found: Row[Any], row: Callable[..., T]) -> T:
    return row(**found._mapping)
