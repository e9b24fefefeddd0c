"""Every process's commits, heard in this one: PostgreSQL LISTEN, published to the hub.

Commits of this process reach its hub in-process (the orchestrator listener); this task adds the
others', from the notifications their transactions sent (persistence/fleet/notifications.py). A
notification of a saga this process drives, sent by another (an operator's intervention that
landed there), restarts the saga's driver from its journal; one that settles a saga a request here
waits for (`placeOrder(awaitOutcomeMs)` replaying a placement made there) answers it.

A listening connection that drops loses whatever was sent meanwhile. So the task checks its
connection every second, and after reconnecting publishes a notice for each saga with transitions
since the connection was last known alive (less a little for notifications still in flight then):
subscribers read from the timeline past what they sent, so a notice for something already sent
costs a read, never a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from api.live.hub import Committed, TransitionHub
from domain.model.saga import TERMINAL_STATUSES, SagaStatus
from domain.orchestration.orchestrator import Orchestrator
from domain.ports import Clock
from persistence.fleet.leases import LeaseBook
from persistence.fleet.notifications import CHANNEL, CommitNotice, changed_since

log = logging.getLogger("ordersaga.fanout")

HEARTBEAT_S = 1.0
RECONNECT_S = 1.0
# Notifications of commits made just before the connection was last seen alive may still have been
# on their way; the catch-up after a reconnect reaches back this much further.
IN_FLIGHT = timedelta(seconds=2)
# Statuses after which nothing happens on its own: what a request awaiting an outcome waits for.
_SETTLED = TERMINAL_STATUSES | {SagaStatus.NEEDS_ATTENTION}


class CommitFanout:
    def __init__(
        self,
        database_url: str,
        reader: AsyncEngine,
        hub: TransitionHub,
        leases: LeaseBook,
        orchestrator: Orchestrator,
        clock: Clock,
    ) -> None:
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._reader = reader
        self._hub = hub
        self._leases = leases
        self._orchestrator = orchestrator
        self._clock = clock
        self._reactions: set[asyncio.Task[None]] = set()
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting and catching up whenever the connection drops."""
        alive_at: datetime | None = None
        while True:
            try:
                # Named, so that operators see in pg_stat_activity which process listens where.
                name = f"ordersaga listen {self._leases.fleet.instance}"[:63]
                connection = await asyncpg.connect(self._dsn, server_settings={"application_name": name})
            except (OSError, asyncpg.PostgresError):
                log.warning("cannot listen for other processes' commits; trying again", exc_info=True)
                await asyncio.sleep(RECONNECT_S)
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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("lost the connection that listens for other processes' commits", exc_info=True)
            finally:
                self.listening.clear()
                await _close(connection)
            await asyncio.sleep(RECONNECT_S)

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            notice = CommitNotice.parse(payload)
        except ValueError:
            log.warning("ignored a notification that is not a commit notice: %r", payload)
            return
        if notice.instance != self._leases.fleet.instance:
            self._deliver(notice)

    def _deliver(self, notice: CommitNotice) -> None:
        self._hub.publish(Committed(notice.saga_id, notice.first, notice.last, notice.status))
        if self._leases.holds(notice.saga_id):
            self._spawn(self._orchestrator.redrive(notice.saga_id))
        if notice.status in _SETTLED and self._orchestrator.watching(notice.saga_id):
            self._spawn(self._orchestrator.settled_elsewhere(notice.saga_id))

    def _spawn(self, reaction: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(reaction)
        self._reactions.add(task)
        task.add_done_callback(self._reactions.discard)


async def _close(connection: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=2)
    except Exception:
        connection.terminate()
