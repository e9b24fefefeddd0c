"""The CPU a webhook delivery costs the sending process, per event, apart from the rest of the server:

    python -m benchmarks.delivery [--sagas 1000] [--events-per-saga 7] [--json F]

Journal events of `--sagas` sagas are rendered (`LoggedEvent.payload`), signed and POSTed (`Sender`,
over `wire.Origin`'s kept-alive connections) as a webhook relay's round sends them: up to 16 sagas at
once, each saga's events one at a time, on uvloop as `serve` runs. The receiver is
benchmarks/webhook_receiver.py in a process of its own; the CPU counted is this process's alone
(user and system time), so the figure is what each delivered event takes from the server's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from api.outbound.addresses import Reach
from api.outbound.resolver import GuardedResolver
from api.outbound.signing import new_secret
from api.outbound.webhooks import CONCURRENCY, DeliveryPolicy, Sender
from api.outbound.wire import Origin
from benchmarks import workload
from benchmarks.fullstack import Receiver
from persistence.read.event_log import LoggedEvent
from persistence.webhooks import Endpoint

STEPS = ("reserveStock", "confirmPayment", "createShipment")


def journal(sagas: int, per_saga: int) -> list[list[LoggedEvent]]:
    """`per_saga` events for each of `sagas` sagas, positions interleaved as busy sagas commit them."""
    now = datetime.now(UTC)
    return [
        [
            LoggedEvent(
                sequence * sagas + n,
                f"00000000-0000-4000-8000-{n:012d}",
                f"00000000-0000-4000-9000-{n:012d}",
                f"bench-{n}",
                sequence,
                "StepCompleted",
                "STOCK_RESERVING",
                STEPS[sequence % len(STEPS)],
                1,
                None,
                now,
            )
            for sequence in range(1, per_saga + 1)
        ]
        for n in range(sagas)
    ]


async def run(sagas: int, per_saga: int) -> dict[str, Any]:
    async with Receiver().serving() as url:
        policy = DeliveryPolicy(reach=Reach(loopback=True))
        endpoint = Endpoint("bench", url, None, None, new_secret(), True, None, None, datetime.now(UTC))
        origin = Origin(url, GuardedResolver(policy.reach), policy.connect_timeout)
        sender = Sender(origin, endpoint, policy)
        slots = asyncio.Semaphore(CONCURRENCY)
        failed = 0

        async def one_saga(events: list[LoggedEvent]) -> None:
            nonlocal failed
            async with slots:
                for event in events:
                    if not (await sender.send(event.event_id, event.payload())).ok:
                        failed += 1
                        return

        await asyncio.gather(*map(one_saga, journal(CONCURRENCY, 2)))  # connections open, code warm
        chains = journal(sagas, per_saga)
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.gather(*map(one_saga, chains))
        after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
        await origin.close()
    events = sagas * per_saga
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "mode": "delivery",
        "sagas": sagas,
        "events": events,
        "failed": failed,
        "events_per_s": round(events / elapsed),
        "cpu_us_per_event": round((user + system) / events * 1e6, 1),
        "system_us_per_event": round(system / events * 1e6, 1),
        # Each a moment this process, ready to run, waited for a core: on a machine the receiver
        # shares, mostly the receiver woken by a request and run first.
        "preempted_per_event": round((after.ru_nivcsw - before.ru_nivcsw) / events, 2),
        "correct": failed == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--events-per-saga", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    workload.emit(uvloop.run(run(args.sagas, args.events_per_saga)), args.json)


if __name__ == "__main__":
    main()
