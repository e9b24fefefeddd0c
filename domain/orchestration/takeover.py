"""Lease rounds: how a process keeps the sagas it drives, and takes over those of a process gone.

Every third of the lease time a process renews all its leases in one statement, lets go of the
sagas it lost (their drivers stop), claims leases that expired elsewhere and drives those sagas on
from their journals. Three rounds per lease time leave two to spare before a lease lapses: one
slow round (a long garbage collection, a busy database) does not cost a process its sagas.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from domain.orchestration.orchestrator import Orchestrator
from domain.ports import LeaseRounds

log = logging.getLogger("ordersaga.leases")

ROUNDS_PER_LEASE = 3


async def lease_round(book: LeaseRounds, orchestrator: Orchestrator) -> None:
    """Renew, let go, claim, drive. A database that does not answer is logged and the round ends;
    the leases then lapse here before anyone else may claim them."""
    try:
        owned, lost = await book.renew()
        if lost:
            log.warning("lost the leases of %d sagas to other processes; stopping their drivers", len(lost))
            await orchestrator.let_go(lost)
        claimed = await book.claim()
    except Exception:
        log.warning("lease round failed; leases here lapse unless a later one renews them", exc_info=True)
        return
    if claimed:
        log.info("took over %d sagas whose leases had expired", len(claimed))
    # Owned sagas without a driver are ones whose driver stepped back while a renewal was late.
    orchestrator.resume(owned | claimed)


async def keep_leases(book: LeaseRounds, orchestrator: Orchestrator, lease_ttl: timedelta) -> None:
    """Run lease rounds, ROUNDS_PER_LEASE of them per `lease_ttl`, until cancelled."""
    period = lease_ttl.total_seconds() / ROUNDS_PER_LEASE
    while True:
        await asyncio.sleep(period)
        await lease_round(book, orchestrator)
