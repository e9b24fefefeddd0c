"""The positions a commit gives its journal entries (SagaWrites.seal; on PostgreSQL one statement for
any number of entries, which inserts them): every entry has one, they run 1, 2, 3, ... without gaps,
each saga's follow its sequence, and its timeline rows carry the same ones. A transaction reads the
entries it appended before they are written, and a second writer of a saga's first entry is a
conflict before anything of it is written."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.saga import SagaEvent, SagaStatus, replay
from domain.model.values import OrderLine
from domain.ports import ConcurrencyConflict, Transaction
from persistence import codec
from persistence.connection import Db
from persistence.database import make_engine
from persistence.tables import journal, saga_timeline, saga_view
from persistence.write.journal import SagaWrites, SqlSagaStore
from tests.integration.support import wait_for_status


async def test_sagas_committed_together_get_gapless_positions_in_sequence_order(svc: Service) -> None:
    placed = await asyncio.gather(
        *(svc.orchestrator.place_order(PlaceOrder(f"c{n}", (OrderLine("SKU-1", 1),))) for n in range(6))
    )
    for saga in placed:
        await wait_for_status(svc, saga.saga_id, SagaStatus.COMPLETED)

    engine = make_engine(svc.settings.database_url, writer=False)
    try:
        async with engine.connect() as conn:
            entries = (
                await conn.execute(select(journal.c.saga_id, journal.c.sequence, journal.c.position))
            ).all()
            shown = (
                await conn.execute(
                    select(saga_timeline.c.saga_id, saga_timeline.c.sequence, saga_timeline.c.position)
                )
            ).all()
    finally:
        await engine.dispose()

    positions = {(saga_id, sequence): position for saga_id, sequence, position in entries}
    assert sorted(positions.values()) == list(range(1, len(entries) + 1))
    for saga in placed:
        ours = sorted((seq, pos) for (saga_id, seq), pos in positions.items() if saga_id == saga.saga_id)
        assert [pos for _, pos in ours] == sorted(pos for _, pos in ours)
    assert {(saga_id, sequence): position for saga_id, sequence, position in shown} == positions


async def _completed_journal(svc: Service) -> tuple[str, list[SagaEvent]]:
    placed = await svc.orchestrator.place_order(PlaceOrder("c1", (OrderLine("SKU-1", 1),)))
    await wait_for_status(svc, placed.saga_id, SagaStatus.COMPLETED)

    async def load(tx: Transaction) -> list[SagaEvent]:
        return await tx.sagas.load(placed.saga_id)

    return placed.saga_id, await svc.runner.run(load)


async def test_a_transaction_reads_the_entries_it_appended_before_they_are_written(svc: Service) -> None:
    _, events = await _completed_journal(svc)
    saga_id = str(uuid.uuid4())

    def entries(first: int, appended: list[SagaEvent]) -> list[dict[str, object]]:
        rows = []
        for sequence, event in enumerate(appended, start=first):
            type_name, version, data = codec.encode(event)
            rows.append(
                {
                    "saga_id": saga_id,
                    "sequence": sequence,
                    "type": type_name,
                    "version": version,
                    "data": data,
                    "recorded_at": event.at,
                }
            )
        return rows

    async def append_and_load(db: Db) -> tuple[list[SagaEvent], list[SagaEvent]]:
        store, writes = SqlSagaStore(db), db.deferred(SagaWrites)
        writes.events += entries(1, events[:3])
        first = await store.load(saga_id)
        writes.events += entries(4, events[3:5])
        return first, await store.load(saga_id)

    first, second = await svc.runner.run_on_connection(append_and_load)
    assert (first, second) == (events[:3], events[:5])

    async def load(db: Db) -> tuple[list[SagaEvent], list[dict[str, object]]]:
        stored = await db.execute(
            select(journal).where(journal.c.saga_id == saga_id).order_by(journal.c.sequence)
        )
        return await SqlSagaStore(db).load(saga_id), [dict(row._mapping) for row in stored]

    loaded, stored = await svc.runner.run_on_connection(load)
    assert loaded == events[:5]
    # Every column of each entry as it was appended, and a position.
    assert [{k: v for k, v in row.items() if k != "position"} for row in stored] == entries(1, events[:5])
    assert all(isinstance(row["position"], int) for row in stored)


async def test_a_saga_started_a_second_time_is_a_concurrency_conflict_and_writes_nothing(
    svc: Service,
) -> None:
    saga_id, events = await _completed_journal(svc)

    async def counts(db: Db) -> list[int]:
        tables = (journal, saga_timeline, saga_view)
        return [(await db.execute(select(func.count()).select_from(t))).scalar_one() for t in tables]

    before = await svc.runner.run_on_connection(counts)

    async def start_again(tx: Transaction) -> None:
        await tx.sagas.append(replay(saga_id, events[:1]), None)

    with pytest.raises(ConcurrencyConflict):
        await svc.runner.run(start_again)
    assert await svc.runner.run_on_connection(counts) == before
