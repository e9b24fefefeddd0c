"""The positions a commit gives its journal entries (SagaWrites.seal; on PostgreSQL one statement for
any number of entries): every entry has one, they run 1, 2, 3, ... without gaps, each saga's follow
its sequence, and its timeline rows carry the same ones."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from api.service import Service
from domain.model.commands import PlaceOrder
from domain.model.saga import SagaStatus
from domain.model.values import OrderLine
from persistence.database import make_engine
from persistence.tables import journal, saga_timeline
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
