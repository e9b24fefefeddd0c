"""The participant faults staged through GraphQL, in the database, so that every process of a
deployment meets the same ones (api/staged_faults.py runs them). A fault of all zeros is no row."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.connection import Db, Writer, upsert
from persistence.tables import staged_faults

_TAKE_FAILURE = (
    update(staged_faults)
    .where(staged_faults.c.participant == bindparam("p"), staged_faults.c.fail_next > 0)
    .values(fail_next=staged_faults.c.fail_next - 1)
    .returning(staged_faults)
)


@dataclass(frozen=True, slots=True)
class StagedFault:
    """A participant's fault as stored: every call waits `delay_ms` milliseconds, the next `fail_next`
    calls fail, then each fails with probability `failure_rate`; a shipment from one of the
    `rejected_warehouses` (codes, sorted) is refused."""

    delay_ms: int
    fail_next: int
    failure_rate: float
    rejected_warehouses: list[str]


class StagedFaultStore:
    """Reads go to `reader`, writes through `writer` (persistence/connection.py); raises what the
    database raises when it does not answer."""

    def __init__(self, reader: AsyncEngine, writer: Writer) -> None:
        self._reader = reader
        self._write = writer

    async def all(self) -> dict[str, StagedFault]:
        """Every staged fault, by participant name."""
        async with self._reader.connect() as conn:
            rows = await conn.execute(select(staged_faults))
            return {
                r.participant: StagedFault(r.delay_ms, r.fail_next, r.failure_rate, r.rejected_warehouses)
                for r in rows
            }

    async def put(self, participant: str, fault: StagedFault | None) -> None:
        """Stage `fault` on `participant`, replacing its fault (an upsert, so two stagings at once
        end with one of them); None heals it."""

        async def work(db: Db) -> None:
            if fault is None:
                await db.execute(delete(staged_faults).where(staged_faults.c.participant == participant))
                return
            staged = upsert(db, staged_faults).values(participant=participant, **asdict(fault))
            await db.execute(
                staged.on_conflict_do_update(index_elements=[staged_faults.c.participant], set_=asdict(fault))
            )

        await self._write(work)

    async def clear(self) -> None:
        async def work(db: Db) -> None:
            await db.execute(delete(staged_faults))

        await self._write(work)

    async def take_failure(self, participant: str) -> int | None:
        """Count one staged failure of `participant` off, for this call to fail: the failures left
        after it, or None when none was left (another process took the last)."""

        async def work(db: Db) -> int | None:
            row = (await db.execute(_TAKE_FAILURE, {"p": participant})).first()
            if row is None:
                return None
            if not (row.fail_next or row.delay_ms or row.failure_rate or row.rejected_warehouses):
                await db.execute(delete(staged_faults).where(staged_faults.c.participant == participant))
            return int(row.fail_next)

        return await self._write(work)
