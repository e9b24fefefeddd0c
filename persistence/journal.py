"""The saga store: the journal (append with the expected version), idempotency placements, and the
projection of each append into the read model, all on the caller's connection (its transaction)."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.ports import ConcurrencyConflict, Placement
from domain.saga import SagaEvent, SagaState
from persistence import codec
from persistence.projection import order_row, saga_row, shipment_row, step_rows, timeline_rows
from persistence.tables import (
    journal,
    order_view,
    placements,
    saga_step_view,
    saga_timeline,
    saga_view,
    shipment_view,
)

_SAGA_CHANGES = (
    "status",
    "failure_reason",
    "version",
    "current_step",
    "next_wakeup_at",
    "steps",
    "updated_at",
    "failed_step",
    "duration_ms",
)
_ORDER_CHANGES = ("status", "picks", "shipment_id", "updated_at")
# Bind names must differ from column names, hence the prefix.
_UPDATE_SAGA = (
    update(saga_view)
    .where(saga_view.c.id == bindparam("key"), saga_view.c.version == bindparam("expected"))
    .values({c: bindparam(f"new_{c}") for c in _SAGA_CHANGES})
)
_UPDATE_ORDER = (
    update(order_view)
    .where(order_view.c.id == bindparam("key"))
    .values({c: bindparam(f"new_{c}") for c in _ORDER_CHANGES})
)
_STEP_CHANGES = ("status", "attempts", "finished_at", "duration_ms")
_UPDATE_STEP = (
    update(saga_step_view)
    .where(saga_step_view.c.saga_id == bindparam("key"), saga_step_view.c.position == bindparam("at"))
    .values({c: bindparam(f"new_{c}") for c in _STEP_CHANGES})
)


class SqlSagaStore:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def load(self, saga_id: str) -> list[SagaEvent]:
        rows = await self._conn.execute(
            select(journal.c.type, journal.c.data)
            .where(journal.c.saga_id == saga_id)
            .order_by(journal.c.sequence)
        )
        return [codec.decode(row.type, row.data) for row in rows]

    async def find_placement(self, idempotency_key: str) -> Placement | None:
        row = (
            await self._conn.execute(
                select(placements).where(placements.c.idempotency_key == idempotency_key)
            )
        ).first()
        return (
            None
            if row is None
            else Placement(row.idempotency_key, row.fingerprint, row.saga_id, row.order_id)
        )

    async def append(
        self, before: SagaState | None, events: list[SagaEvent], after: SagaState, placement: Placement | None
    ) -> None:
        first = 1 if before is None else before.version + 1
        rows = []
        for sequence, event in enumerate(events, start=first):
            type_name, data = codec.encode(event)
            rows.append(
                {
                    "saga_id": after.saga_id,
                    "sequence": sequence,
                    "type": type_name,
                    "data": data,
                    "recorded_at": event.at,
                }
            )
        try:
            await self._conn.execute(insert(journal), rows)
        except IntegrityError as clash:
            raise ConcurrencyConflict(after.saga_id) from clash
        await self._conn.execute(insert(saga_timeline), timeline_rows(before, events, after.saga_id))
        await self._project(before, after)
        if placement is not None:
            await self._conn.execute(
                insert(placements).values(
                    idempotency_key=placement.idempotency_key,
                    fingerprint=placement.fingerprint,
                    saga_id=placement.saga_id,
                    order_id=placement.order_id,
                )
            )

    async def _project(self, before: SagaState | None, after: SagaState) -> None:
        await self._project_steps(before, after)
        shipment = shipment_row(after)
        if shipment is not None and (before is None or before.shipment_id is None):
            await self._conn.execute(insert(shipment_view).values(shipment))
        saga, order = saga_row(after), order_row(after)
        if before is None:
            await self._conn.execute(insert(saga_view).values(saga))
            await self._conn.execute(insert(order_view).values(order))
            return
        saga_changes = {f"new_{c}": saga[c] for c in _SAGA_CHANGES}
        updated = await self._conn.execute(
            _UPDATE_SAGA, {"key": after.saga_id, "expected": before.version, **saga_changes}
        )
        if updated.rowcount != 1:
            raise ConcurrencyConflict(after.saga_id)
        if order != order_row(before):
            await self._conn.execute(
                _UPDATE_ORDER, {"key": after.order_id, **{f"new_{c}": order[c] for c in _ORDER_CHANGES}}
            )

    async def _project_steps(self, before: SagaState | None, after: SagaState) -> None:
        # A transaction changes the last step (another attempt, its end) and may start new ones.
        known = {row["position"]: row for row in step_rows(before)} if before else {}
        changed = [row for row in step_rows(after) if known.get(row["position"]) != row]
        added = [row for row in changed if row["position"] not in known]
        if added:
            await self._conn.execute(insert(saga_step_view), added)
        moved = [
            {"key": row["saga_id"], "at": row["position"], **{f"new_{c}": row[c] for c in _STEP_CHANGES}}
            for row in changed
            if row["position"] in known
        ]
        if moved:
            await self._conn.execute(_UPDATE_STEP, moved)
