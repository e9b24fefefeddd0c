"""Migration 0012 numbers the events an earlier release stored: in the order they were recorded, but
never one before an earlier event of its saga, whatever the clocks of the processes that wrote them
said (consumers read a saga's events in position order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from persistence.database import make_engine
from persistence.migrate import upgrade
from tests.upgrade.releases import downgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_stored_events_are_numbered_in_recorded_order_but_each_saga_in_its_own(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(downgrade, "0011")
            # Saga "a"'s second event was written by a process whose clock was 5 s behind.
            stored = [("a", 1, 0), ("b", 1, 1), ("a", 2, -5), ("b", 2, 2), ("a", 3, 3)]
            journal = text(
                "INSERT INTO journal (saga_id, sequence, type, version, data, recorded_at)"
                " VALUES (:saga_id, :sequence, 'SagaStarted', 1, '{}', :at)"
            )
            for saga_id, sequence, seconds in stored:
                await conn.execute(
                    journal, {"saga_id": saga_id, "sequence": sequence, "at": T0 + timedelta(seconds=seconds)}
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT saga_id, sequence FROM journal ORDER BY position"))
            numbered = [(r.saga_id, r.sequence) for r in rows]
            head = (await conn.execute(text("SELECT position FROM journal_head"))).scalar_one()
    finally:
        await engine.dispose()
    assert numbered == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("a", 3)]
    assert head == 5
