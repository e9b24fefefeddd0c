"""A commit whose answer is lost, staged on purpose (api/staged_faults.py): what the service does
when the connection to PostgreSQL dies as a write commits, the write having taken effect."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_POLL_S = 0.005


async def commit_losing_answer(conn: AsyncConnection) -> None:
    """Commit `conn`'s transaction on PostgreSQL, and lose the answer: this side stops reading,
    sends COMMIT, waits (on another connection) until the server has committed, terminates the
    serving backend (pg_terminate_backend) and drops the connection with the answer unread. Raises
    what a lost connection raises; the transaction has committed."""
    raw: Any = (await conn.get_raw_connection()).driver_connection  # the asyncpg connection
    backend = raw.get_server_pid()
    raw._transport.pause_reading()  # asyncpg has no public handle on its transport
    committing = asyncio.ensure_future(conn.commit())
    witness = await conn.engine.connect()
    try:
        witness = await witness.execution_options(isolation_level="AUTOCOMMIT")
        await _until(witness, "SELECT state = 'idle' FROM pg_stat_activity WHERE pid = :pid", backend)
        await witness.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await _until(witness, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid", backend)
    finally:
        await witness.close()
    raw.terminate()  # the answer is still unread: the commit fails as on any lost connection
    await committing


async def _until(conn: AsyncConnection, condition: str, backend: int) -> None:
    # Polled: the server tells no one when another backend commits or exits.
    while not (await conn.execute(text(condition), {"pid": backend})).scalar():  # noqa: ASYNC110
        await asyncio.sleep(_POLL_S)
