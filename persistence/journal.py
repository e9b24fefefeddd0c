"""The saga store: the journal (append with the expected version), idempotency placements, and the
projection of each append into the read model, all on the caller's connection (its transaction)."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.ports import ConcurrencyConflict, Placement
from domain.saga import SagaEvent, SagaState
from persistence import codec
from persistence.projection import order_row, saga_row
from persistence.tables import journal, order_view, placements, saga_view

_SAGA_CHANGES = (
    "status",
    "failure_reason",
    "version",
    "current_step",
    "next_wakeup_at",
    "steps",
    "updated_at",
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
        await self._project(before, after)
        if placement is not None:
            try:
                await self._conn.execute(
                    insert(placements).values(
                        idempotency_key=placement.idempotency_key,
                        fingerprint=placement.fingerprint,
                        saga_id=placement.saga_id,
                        order_id=placement.order_id,
                    )
                )
            except IntegrityError as clash:
                raise ConcurrencyConflict(placement.saga_id) from clash

    async def _project(self, before: SagaState | None, after: SagaState) -> None:
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
        previous = order_row(before)
        if any(order[c] != previous[c] for c in _ORDER_CHANGES if c != "updated_at"):
            await self._conn.execute(
                _UPDATE_ORDER, {"key": after.order_id, **{f"new_{c}": order[c] for c in _ORDER_CHANGES}}
            )
