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
its journal.

A process believes it holds each lease only until a moment no later than the expiry the database
holds for it, so it stops writing before anyone else may start. It keeps that moment per lease, on
its own monotonic clock, from a time it read before the database's clock was read for the expiry:
- a lease its commit takes: when the take was sent (the expiry is the database's clock at the
  statement, `clock_timestamp()`, plus the lease time);
- a lease it claims: when the claim began;
- a lease a renewal reads: when the renewal began, plus the time the database says the lease has
  left. Not simply "the renewal plus the lease time": a renewal skips the rows a commit of this
  process holds locked, and does not see a take not yet committed, so some leases it reads were
  not extended by it.
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
from persistence.prepared import Prepared
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


# A commit's takes and drops go straight to the driver (persistence/prepared.py), as its other writes.
_TAKING = pg_insert(saga_leases).values(
    saga_id=bindparam("saga"),
    owner=bindparam("me"),
    expires_at=func.clock_timestamp() + bindparam("ttl", type_=Interval()),
)
_TAKE = Prepared(
    _TAKING.on_conflict_do_update(
        index_elements=[saga_leases.c.saga_id],
        set_={"owner": _TAKING.excluded.owner, "expires_at": _TAKING.excluded.expires_at},
    ),
    dialect="postgresql",
)
_DROP = Prepared(
    delete(saga_leases).where(saga_leases.c.saga_id.in_(bindparam("ids", expanding=True))),
    dialect="postgresql",
)


# Renewing skips the rows a commit of this process has locked (one settling or taking the saga,
# which drops the lease or sets a fresh one), so that a renewal never waits for a commit lane, nor a
# lane for it; which leases are still owned is then read, not locked.
_MINE = select(saga_leases.c.saga_id).where(saga_leases.c.owner == bindparam("me"))
_RENEW = (
    update(saga_leases)
    .where(saga_leases.c.saga_id.in_(_MINE.with_for_update(skip_locked=True).scalar_subquery()))
    .values(expires_at=func.now() + bindparam("ttl", type_=Interval()))
)
# What each owned lease has left, in seconds, on the database's clock as the renewal began.
_LEFT = select(
    saga_leases.c.saga_id, func.extract("epoch", saga_leases.c.expires_at - func.now()).label("left")
).where(saga_leases.c.owner == bindparam("me"))
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
    """The leases this process holds, as it believes them (`holds`, the domain's SagaLeases): for
    each, the moment on this process's monotonic clock until which it may write. Its commits take and
    drop leases through `write`, its rounds (`renew`, `claim`) keep them against `saga_leases`."""

    def __init__(
        self, engine: AsyncEngine, fleet: Fleet, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._fleet = fleet
        self._monotonic = monotonic
        self._ttl_s = fleet.lease_ttl.total_seconds()
        self._until: dict[str, float] = {}
        # When each take of a commit not yet announced was sent, for the lease it will hold.
        self._sent: dict[str, float] = {}
        # When each drop of a commit not yet announced was sent: a renewal that no longer finds
        # that lease must not take it for one lost to another process.
        self._dropping: dict[str, float] = {}

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    @property
    def held(self) -> int:
        return len(self._until)

    def holds(self, saga_id: str) -> bool:
        return self._monotonic() < self._until.get(saga_id, float("-inf"))

    async def write(self, db: Db, changes: dict[str, bool]) -> None:
        """Take (True) or drop (False) the leases of these sagas, in the transaction of `db`."""
        taken = [saga_id for saga_id, take in changes.items() if take]
        dropped = [saga_id for saga_id, take in changes.items() if not take]
        if taken:
            sent = self._monotonic()
            self._sent.update(dict.fromkeys(taken, sent))
            me, ttl = self._fleet.instance, self._fleet.lease_ttl
            await db.execute(_TAKE, [{"saga": s, "me": me, "ttl": ttl} for s in taken])
        if dropped:
            self._dropping.update(dict.fromkeys(dropped, self._monotonic()))
            await db.execute(_DROP, {"ids": dropped})

    def on_change(self, change: SagaChange) -> None:
        """The orchestrator listener: mirrors what this process's own commits did to leases."""
        saga_id = change.after.saga_id
        self._dropping.pop(saga_id, None)
        match lease_change(change.before, change.after):
            case True:
                self._until[saga_id] = self._sent.pop(saga_id, float("-inf")) + self._ttl_s
            case False:
                self._until.pop(saga_id, None)

    async def renew(self) -> tuple[set[str], set[str]]:
        """Extend every lease this process owns. Answers the sagas it holds and the ones it lost
        (claimed by another process after they expired, or settled by another's commit). Raises if
        the database does not answer; the leases then lapse here when their time is up."""
        started = self._monotonic()
        believed = set(self._until)
        async with self._engine.begin() as conn:
            await conn.execute(_RENEW, self._params())
            left = {r.saga_id: float(r.left) for r in await conn.execute(_LEFT, self._params())}
        gone = believed - left.keys()
        # Not lost: the leases this process's own commits dropped meanwhile (settling their sagas),
        # whether those commits were announced by now (no longer believed) or not yet (dropping).
        lost = {saga_id for saga_id in gone if saga_id in self._until and saga_id not in self._dropping}
        for saga_id in gone:
            self._until.pop(saga_id, None)
        # A lease whose drop was announced while the renewal ran (its row, locked by the dropping
        # commit, was skipped and read as it stood) is not held again.
        settled = {saga_id for saga_id in left.keys() & believed if saga_id not in self._until}
        for saga_id, seconds in left.items():
            if saga_id not in settled:
                self._until[saga_id] = started + seconds
        # A take or drop sent this long ago and never announced was rolled back.
        self._sent = {s: at for s, at in self._sent.items() if at > started - self._ttl_s}
        self._dropping = {s: at for s, at in self._dropping.items() if at > started - self._ttl_s}
        return set(left) - settled, lost

    async def claim(self) -> set[str]:
        """Take over leases that expired (whoever owned them), up to CLAIM_BATCH; answers their sagas."""
        started = self._monotonic()
        async with self._engine.begin() as conn:
            rows = await conn.execute(_CLAIM, {**self._params(), "limit": CLAIM_BATCH})
            claimed = {r.saga_id for r in rows}
        self._until.update(dict.fromkeys(claimed, started + self._ttl_s))
        return claimed

    async def hand_back(self) -> None:
        """Let the others take this process's sagas at once (a clean stop)."""
        self._until.clear()
        async with self._engine.begin() as conn:
            await conn.execute(_HAND_BACK, self._params())

    def _params(self) -> dict[str, object]:
        return {"me": self._fleet.instance, "ttl": self._fleet.lease_ttl}
