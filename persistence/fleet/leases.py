"""Saga leases: with several processes over one PostgreSQL, which process drives each running saga.

A lease is a row of `saga_leases` (saga id, owner instance, expiry on the database's clock), kept
by one rule (`lease_change`), in the transaction that changes the saga:

- the commit that sets a saga moving (its placement, or an operator's retry of a parked saga) takes
  the lease for the process that made it;
- the commit that settles a saga (finished, or parked for an operator) drops it.

So a lease row exists exactly while a saga moves on its own. Between those commits its owner renews
all its leases at once (`LeaseBook.renew`); a lease that was not renewed in time (its owner died,
paused or lost the network) is claimed by whichever process looks first (`LeaseBook.claim`, with
`FOR UPDATE SKIP LOCKED`, so claimers never wait for each other), which then drives the saga on from
its journal. A process believes it holds its leases only until its last successful renewal began
plus the lease time, a moment no later than the expiry the database holds, so it stops writing
before anyone else may start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Interval, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.model.saga import SagaChange, SagaState
from persistence.connection import Db
from persistence.tables import saga_leases

# Most expired leases one claim round takes, so that a process coming up next to a dead one's
# thousands of sagas does not take them all before its peers look.
CLAIM_BATCH = 200


@dataclass(frozen=True, slots=True)
class Fleet:
    """This process as one of several over one PostgreSQL: its name, and how long a lease lasts
    without renewal (`serve --lease-ttl`)."""

    instance: str
    lease_ttl: timedelta


def lease_change(before: SagaState | None, after: SagaState) -> bool | None:
    """What a commit from `before` to `after` does to the saga's lease: True takes it, False drops
    it, None leaves it as it is."""
    if after.is_settled:
        return False
    if before is None or before.is_settled:
        return True
    return None


_TAKE = pg_insert(saga_leases).values(
    saga_id=bindparam("saga"),
    owner=bindparam("me"),
    expires_at=func.now() + bindparam("ttl", type_=Interval()),
)
_TAKE = _TAKE.on_conflict_do_update(
    index_elements=[saga_leases.c.saga_id],
    set_={"owner": _TAKE.excluded.owner, "expires_at": _TAKE.excluded.expires_at},
)
_DROP = delete(saga_leases).where(saga_leases.c.saga_id.in_(bindparam("ids", expanding=True)))


async def write_leases(db: Db, fleet: Fleet, changes: dict[str, bool]) -> None:
    """Take (True) or drop (False) the leases of these sagas, in the transaction of `db`."""
    taken = [saga_id for saga_id, take in changes.items() if take]
    dropped = [saga_id for saga_id, take in changes.items() if not take]
    if taken:
        await db.execute(_TAKE, [{"saga": s, "me": fleet.instance, "ttl": fleet.lease_ttl} for s in taken])
    if dropped:
        await db.execute(_DROP, {"ids": dropped})


# Renewing skips the rows a commit of this process has locked (one settling or taking the saga,
# which drops the lease or sets a fresh one), so that a renewal never waits for a commit lane, nor a
# lane for it; which leases are still owned is then read, not locked.
_MINE = select(saga_leases.c.saga_id).where(saga_leases.c.owner == bindparam("me"))
_RENEW = (
    update(saga_leases)
    .where(saga_leases.c.saga_id.in_(_MINE.with_for_update(skip_locked=True).scalar_subquery()))
    .values(expires_at=func.now() + bindparam("ttl", type_=Interval()))
)
_DUE = (
    select(saga_leases.c.saga_id)
    .where(saga_leases.c.expires_at < func.now())
    .order_by(saga_leases.c.expires_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
    .cte("due")
)
_CLAIM = (
    update(saga_leases)
    .where(saga_leases.c.saga_id == _DUE.c.saga_id)
    .values(owner=bindparam("me"), expires_at=func.now() + bindparam("ttl", type_=Interval()))
    .returning(saga_leases.c.saga_id)
)
# At a clean stop the leases are handed back as expired, so that the others take over at once.
_HAND_BACK = (
    update(saga_leases)
    .where(saga_leases.c.owner == bindparam("me"))
    .values(expires_at=func.now() - bindparam("ttl", type_=Interval()))
)


class LeaseBook:
    """The leases this process holds, as it believes them (`holds`, the domain's SagaLeases), and
    the rounds that keep that belief true against `saga_leases`."""

    def __init__(
        self, engine: AsyncEngine, fleet: Fleet, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._fleet = fleet
        self._monotonic = monotonic
        self._held: set[str] = set()
        self._valid_until = float("-inf")

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    @property
    def held(self) -> int:
        return len(self._held)

    def holds(self, saga_id: str) -> bool:
        return saga_id in self._held and self._monotonic() < self._valid_until

    def on_change(self, change: SagaChange) -> None:
        """The orchestrator listener: mirrors what this process's own commits did to leases."""
        match lease_change(change.before, change.after):
            case True:
                self._held.add(change.after.saga_id)
            case False:
                self._held.discard(change.after.saga_id)

    async def renew(self) -> tuple[set[str], set[str]]:
        """Extend every lease this process owns. Answers the sagas it holds and the ones it lost
        (claimed by another process after they expired, or settled by another's commit). Raises if
        the database does not answer; the leases then lapse here when their time is up."""
        started = self._monotonic()
        believed = set(self._held)
        async with self._engine.begin() as conn:
            await conn.execute(_RENEW, self._params())
            owned = {r.saga_id for r in await conn.execute(_MINE, self._params())}
        self._valid_until = started + self._fleet.lease_ttl.total_seconds()
        lost = believed - owned
        self._held -= lost
        self._held |= owned
        return owned, lost

    async def claim(self) -> set[str]:
        """Take over leases that expired (whoever owned them), up to CLAIM_BATCH; answers their sagas."""
        async with self._engine.begin() as conn:
            rows = await conn.execute(_CLAIM, {**self._params(), "limit": CLAIM_BATCH})
            claimed = {r.saga_id for r in rows}
        self._held |= claimed
        return claimed

    async def hand_back(self) -> None:
        """Let the others take this process's sagas at once (a clean stop)."""
        self._held.clear()
        async with self._engine.begin() as conn:
            await conn.execute(_HAND_BACK, self._params())

    def _params(self) -> dict[str, object]:
        return {"me": self._fleet.instance, "ttl": self._fleet.lease_ttl}
