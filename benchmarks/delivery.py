"""The CPU a webhook delivery costs the service's process, and the process it sends from, per event:

    python -m benchmarks.delivery [--sagas 1000] [--events-per-saga 7] [--batch 256] [--json F]

Journal events of `--sagas` sagas are rendered (`LoggedEvent.payload`) and handed round by round
(`--batch` events a round, grouped by saga, as a webhook relay reads them) to the sending process
(api/outbound/sender_process.py), which signs and POSTs them over `wire.Origin`'s kept-alive
connections: up to 16 sagas at once, each saga's events one at a time, on uvloop as `serve` runs. The
receiver is benchmarks/webhook_receiver.py in a process of its own. `cpu_us_per_event` counts this
process alone (user and system time), standing for the service's: what each delivered event takes
from the cores the sagas run on; `sending_process_cpu_us_per_event` is the sending process's.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from api.outbound.addresses import Reach
from api.outbound.sender_process import Destination, SenderProcess
from api.outbound.signing import new_secret
from api.outbound.webhooks import BATCH, CONCURRENCY, DeliveryPolicy
from benchmarks import workload
from benchmarks.fullstack import Receiver, children, server_cpu_s
from persistence.read.event_log import LoggedEvent

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


def rounds(sagas: int, per_saga: int, batch: int) -> list[list[list[LoggedEvent]]]:
    """The journal of `journal(sagas, per_saga)` as a relay reads it, `batch` events a round in
    position order, each round's events grouped into chains by saga."""
    events = sorted((e for chain in journal(sagas, per_saga) for e in chain), key=lambda e: e.position)
    grouped = []
    for start in range(0, len(events), batch):
        by_saga: dict[str, list[LoggedEvent]] = {}
        for event in events[start : start + batch]:
            by_saga.setdefault(event.saga_id, []).append(event)
        grouped.append(list(by_saga.values()))
    return grouped


async def run(sagas: int, per_saga: int, batch: int) -> dict[str, Any]:
    async with Receiver().serving() as url:
        policy = DeliveryPolicy(reach=Reach(loopback=True))
        to = Destination(url, policy.reach, policy.connect_timeout, policy.timeout, new_secret())
        process = SenderProcess()
        failed = 0

        async def relay(round_: list[list[LoggedEvent]]) -> None:
            nonlocal failed
            chains = [[(event.event_id, event.payload()) for event in chain] for chain in round_]
            answers = await process.send(to, chains, CONCURRENCY)
            failed += sum(not attempts[-1].ok for attempts in answers)

        for round_ in rounds(CONCURRENCY, 2, batch):  # the child started, connections open, code warm
            await relay(round_)
        (child,) = (pid for pid in children(os.getpid()) if "api.outbound.sender" in command_line(pid))
        journal_read = rounds(sagas, per_saga, batch)
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        sending_before = server_cpu_s(child)
        for round_ in journal_read:
            await relay(round_)
        after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - started
        sending = server_cpu_s(child) - sending_before
        await process.stop()
    events = sagas * per_saga
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {
        "mode": "delivery",
        "sagas": sagas,
        "events": events,
        "batch": batch,
        "failed": failed,
        "events_per_s": round(events / elapsed),
        "cpu_us_per_event": round((user + system) / events * 1e6, 1),
        "system_us_per_event": round(system / events * 1e6, 1),
        "sending_process_cpu_us_per_event": round(sending / events * 1e6, 1),
        # Each a moment this process, ready to run, waited for a core: on a machine the receiver
        # shares, mostly the receiver woken by a request and run first.
        "preempted_per_event": round((after.ru_nivcsw - before.ru_nivcsw) / events, 2),
        "correct": failed == 0,
    }


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sagas", type=int, default=1000)
    parser.add_argument("--events-per-saga", type=int, default=7)
    parser.add_argument("--batch", type=int, default=BATCH, help="journal events a round")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    workload.emit(uvloop.run(run(args.sagas, args.events_per_saga, args.batch)), args.json)


if __name__ == "__main__":
    main()
