"""Reads held in the read engine's threads (persistence/read/reader.py), as long ones under load
would hold them: `SELECT held(n)` records `n` and waits in its thread until the test lets it answer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import Result, event, exc, text

from persistence.read.reader import ReadEngine


class HeldReads:
    """`held(n)`, a SQL function on the blocking twin's connections as they are taken from now on;
    `close` takes it away."""

    def __init__(self, reads: ReadEngine) -> None:
        assert reads.blocking is not None, "reads of one statement run on the async engine here"
        self._reads, self._engine = reads, reads.blocking
        self.calls: list[int] = []
        self.answer = threading.Event()
        event.listen(self._engine, "checkout", self._define)

    def _define(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.create_function("held", 1, self._held)

    def _held(self, n: int) -> int:
        self.calls.append(n)
        assert self.answer.wait(10), "never let answer"
        return n

    async def read(self, n: int) -> int:
        return int(await self._reads.read(text(f"SELECT held({n})"), Result.scalar_one))

    async def running(self, *ns: int) -> list[asyncio.Task[int]]:
        """Reads of `held(n)` for each of `ns`, once each has started in a thread. One withdrawn
        because other reads kept the threads busy past the time-out (a loaded machine) is sent
        again."""
        reads = {n: asyncio.create_task(self.read(n)) for n in ns}
        for _ in range(500):
            for n, read in reads.items():
                if read.done() and isinstance(read.exception(), exc.TimeoutError):
                    reads[n] = asyncio.create_task(self.read(n))
            if sorted(self.calls) == sorted(ns):
                return list(reads.values())
            await asyncio.sleep(0.01)
        raise AssertionError(f"reads {ns} never all started: {self.calls}")

    def close(self) -> None:
        self.answer.set()
        event.remove(self._engine, "checkout", self._define)
