"""The participant faults staged through GraphQL, in the database, so that every process of a
deployment meets the same ones (api/staged_faults.py runs them). A fault of all zeros is no row."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.connection import whole
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
    """Raises what the database raises when it does not answer."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self) -> dict[str, StagedFault]:
        """Every staged fault, by participant name."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(staged_faults))
            return {
                r.participant: StagedFault(r.delay_ms, r.fail_next, r.failure_rate, r.rejected_warehouses)
                for r in rows
            }

    @whole
    async def put(self, participant: str, fault: StagedFault | None) -> None:
        """Stage `fault` on `participant`, replacing its fault (an upsert, so two stagings at once
        end with one of them); None heals it."""
        async with self._engine.begin() as conn:
            if fault is None:
                await conn.execute(delete(staged_faults).where(staged_faults.c.participant == participant))
                return
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            staged = dialect.insert(staged_faults).values(participant=participant, **asdict(fault))
            await conn.execute(
                staged.on_conflict_do_update(index_elements=[staged_faults.c.participant], set_=asdict(fault))
            )

    @whole
    async def clear(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(staged_faults))

    @whole
    async def take_failure(self, participant: str) -> int | None:
        """Count one staged failure of `participant` off, for this call to fail: the failures left
        after it, or None when none was left (another process took the last)."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(_TAKE_FAILURE, {"p": participant})).first()
            if row is None:
                return None
            if not (row.fail_next or row.delay_ms or row.failure_rate or row.rejected_warehouses):
                await conn.execute(delete(staged_faults).where(staged_faults.c.participant == participant))
        return int(row.fail_next)
