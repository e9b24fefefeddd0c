"""What the integration tests share: a fast saga policy, a started service, a small catalog, waiting
for a saga to reach a status, a read engine, the journal's events as the relays read them, and the
statements SQLAlchemy executes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event

from api.service import Service
from api.settings import Settings
from domain.model.saga import SagaPolicy, SagaStatus
from domain.model.values import StorageCondition
from persistence.database import make_engine
from persistence.read.event_log import LoggedEvent, events_after
from persistence.read.reader import ReadEngine
from persistence.write import catalog

FAST = SagaPolicy(
    reserve_timeout=timedelta(seconds=2),
    confirm_timeout=timedelta(seconds=2),
    shipment_timeout=timedelta(seconds=2),
    retry_backoff=timedelta(milliseconds=50),
)
TERMINAL = (SagaStatus.COMPLETED, SagaStatus.FAILED, SagaStatus.NEEDS_ATTENTION)


async def start_service(url: str, **kwargs: object) -> Service:
    svc = Service(Settings(database_url=url, policy=FAST), **kwargs)  # type: ignore[arg-type]
    await svc.start()
    return svc


async def stock_catalog(svc: Service, quantity: int = 10) -> None:
    async def load(conn) -> None:  # type: ignore[no-untyped-def]
        await catalog.register_warehouse(conn, "W1", "One", [("A", StorageCondition.AMBIENT)])
        await catalog.register_warehouse(conn, "W2", "Two", [("A", StorageCondition.AMBIENT)])
        await catalog.register_product(conn, "SKU-1", "Thing", StorageCondition.AMBIENT)
        await catalog.receive_stock(conn, "SKU-1", "W1", "A", quantity, svc.clock.now())

    await svc.write(load)


async def wait_for_status(svc: Service, saga_id: str, *statuses: SagaStatus, seconds: float = 10) -> str:
    wanted = {s.value for s in statuses}
    for _ in range(int(seconds / 0.02)):
        row = await svc.read.saga(saga_id)
        if row is not None and row.status in wanted:
            return str(row.status)
        await asyncio.sleep(0.02)
    raise AssertionError(f"saga {saga_id} did not reach {wanted}; it is {row.status if row else None}")


@contextlib.asynccontextmanager
async def read_engine(database_url: str, **options: Any) -> AsyncIterator[ReadEngine]:
    """A read engine on a reader engine of `database_url` (`options` for `make_engine`: a pool's
    size and time-out, say), closed, and its engine disposed, afterwards."""
    engine = make_engine(database_url, writer=False, **options)
    reads = ReadEngine(engine)
    try:
        yield reads
    finally:
        await reads.close()
        await engine.dispose()


async def logged_events(database_url: str) -> list[LoggedEvent]:
    """Every journal event, in position order, as the relays read it."""
    async with read_engine(database_url) as reads:
        return await events_after(reads, 0, 1_000_000)


@contextlib.contextmanager
def through_sqlalchemy() -> Iterator[list[str]]:
    """The statements SQLAlchemy executes meanwhile, in any engine (none for a `Prepared` statement
    run straight on the driver)."""
    executed: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield executed
    finally:
        event.remove(Engine, "before_cursor_execute", record)
