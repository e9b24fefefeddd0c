"""Every process's commits, heard in this one: PostgreSQL LISTEN on the commit notices that other
processes' transactions send (persistence/fleet/notifications.py).

Commits of this process reach its listeners in-process (the orchestrator's); this task hears the
others' and hands each notice to `heard`, which the composition root wires to the live fan-out and
to the orchestrator's reactions (api/service.py).

A listening connection that drops loses whatever was sent meanwhile. So the task checks its
connection every second, and after reconnecting hands on a notice for each saga with transitions
since the connection was last known alive (less a little for notifications still in flight then):
subscribers read from the timeline past what they sent, so a notice for something already sent
costs a read, never a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.orchestration.attempts import jittered_pause
from domain.ports import Clock
from persistence.fleet.notifications import CHANNEL, CommitNotice, changed_since

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("ordersaga.fanout")

HEARTBEAT_S = 1.0
# Between tries to listen again: not growing, since a process that does not listen misses the fleet's
# commits, but jittered (the first step of jittered_pause), so that processes that lost the database
# together do not reconnect in step.
RECONNECT_S = 1.0
# Notifications of commits made just before the connection was last seen alive may still have been
# on their way; the catch-up after a reconnect reaches back this much further.
IN_FLIGHT = timedelta(seconds=2)


class CommitListener:
    """Hears the commits of processes other than `instance` and calls `heard` with each notice."""

    def __init__(
        self,
        database_url: str,
        reader: AsyncEngine,
        instance: str,
        clock: Clock,
        heard: Callable[[CommitNotice], None],
    ) -> None:
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._reader = reader
        self._instance = instance
        self._clock = clock
        self._deliver = heard
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting and catching up whenever the connection drops."""
        import asyncpg  # lazily: only a service on PostgreSQL listens, and SQLite's need not load it

        alive_at: datetime | None = None
        while True:
            try:
                # Named, so that operators see in pg_stat_activity which process listens where.
                name = f"ordersaga listen {self._instance}"[:63]
                connection = await asyncpg.connect(self._dsn, server_settings={"application_name": name})
            except (OSError, asyncpg.PostgresError):
                log.warning("cannot listen for other processes' commits; trying again", exc_info=True)
                await asyncio.sleep(jittered_pause(RECONNECT_S, 1))
                continue
            try:
                await connection.add_listener(CHANNEL, self._heard)
                if alive_at is not None:
                    missed = await changed_since(self._reader, alive_at - IN_FLIGHT)
                    log.info("listening again; catching up on %d sagas", len(missed))
                    for notice in missed:
                        self._deliver(notice)
                self.listening.set()
                while True:
                    alive_at = self._clock.now()
                    await connection.fetchval("SELECT 1")
                    await asyncio.sleep(HEARTBEAT_S)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError):
                # SQLAlchemyError: the catch-up's read, on the read pool, failed or found no free
                # connection in time; listening again catches up again.
                log.warning("lost the connection that listens for other processes' commits", exc_info=True)
            finally:
                self.listening.clear()
                await _close(connection)
            await asyncio.sleep(jittered_pause(RECONNECT_S, 1))

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = CommitNotice.parse(payload)
        except ValueError:
            log.warning("ignored a notification that is not a commit notice: %r", payload)
            return
        if notice.instance != self._instance:
            self._deliver(notice)


async def _close(connection: asyncpg.Connection) -> None:
    try:
        async with asyncio.timeout(2):  # not wait_for, which on Python 3.11 may drop a cancellation
            await connection.close()
    except Exception:
        connection.terminate()
