"""A long run with live subscribers: orders placed steadily while `sagaFeed` subscribers follow every
transition, the server's resident memory (RSS) sampled throughout; it should stay flat after warm-up.

    python -m benchmarks.soak --minutes 10 --subscribers 200 [--concurrency 8] [--sample-seconds 5]
                              [--postgres URL] [--json F] [--chart F.png]

The server runs as `ordersaga serve` in a process of its own; its RSS is read from /proc every
`--sample-seconds`. The first `--warm-up` share of the run fills what the process keeps on purpose
(the transitions kept for late subscribers, the parse cache, the connection pools); the figures
after it are the growth in MB per minute (a least-squares line through the samples) and the highest
RSS. When the load stops, the subscribers stay connected for a few more samples: what the server
holds then is what it keeps while idle. Every subscriber must receive each saga's transitions in
order (sequences 1, 2, ... to its end); a feed that fails or falls out of order is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import workload
from benchmarks.databases import Database, fresh_database
from benchmarks.fanout import FEED, PROTOCOL, TERMINAL
from benchmarks.fullstack import AWAIT_MS, PLACE, memory_mib, post_graphql, served, stock_catalog

IDLE_SAMPLES = 4


class Follower:
    """One connection's feed, remembering only the sagas under way: the last sequence of each."""

    def __init__(self) -> None:
        self.messages = 0
        self.out_of_order = 0
        self._last: dict[str, int] = {}

    async def follow(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.ws_connect(url, protocols=(PROTOCOL,), max_msg_size=0) as socket:
            await socket.send_json({"type": "connection_init"})
            if (await socket.receive_json()).get("type") != "connection_ack":
                raise RuntimeError("no connection_ack")
            await socket.send_json({"id": "feed", "type": "subscribe", "payload": {"query": FEED}})
            async for frame in socket:
                message = json.loads(frame.data)
                if message.get("type") != "next" or "errors" in message["payload"]:
                    raise RuntimeError(f"the feed failed: {message}")
                self._receive(message["payload"]["data"]["sagaFeed"])
            raise RuntimeError(f"the server closed the feed ({socket.close_code})")

    def _receive(self, update: dict[str, Any]) -> None:
        saga_id, sequence = update["saga"]["id"], update["sequence"]
        self.messages += 1
        # A saga placed before this feed was live may be joined midway; after that, no gap.
        if saga_id in self._last and sequence != self._last[saga_id] + 1:
            self.out_of_order += 1
        if update["status"] in TERMINAL:
            self._last.pop(saga_id, None)
        else:
            self._last[saga_id] = sequence


async def run(
    minutes: float,
    subscribers: int,
    concurrency: int,
    sample_s: float,
    warm_up: float,
    database: Database,
    workdir: Path,
) -> dict[str, Any]:
    skus = workload.skus(False)
    samples: list[dict[str, Any]] = []
    async with (
        served(workdir, database) as (url, pid),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        # Stock for as many orders as the run could place at several hundred a second.
        await stock_catalog(session, url, skus, 10**9)
        ws_url = url.replace("http://", "ws://", 1)
        feeds = [Follower() for _ in range(subscribers)]
        following = [asyncio.create_task(feed.follow(session, ws_url)) for feed in feeds]
        placed, t0 = 0, time.monotonic()
        end = t0 + minutes * 60

        async def place_until_end(lane: int) -> None:
            nonlocal placed
            while time.monotonic() < end:
                sku = skus[(lane + placed * 7) % len(skus)]
                order = {"customerId": f"soak-{lane}", "lines": [{"sku": sku, "quantity": 1}]}
                await post_graphql(session, url, PLACE, input=order | {"awaitOutcomeMs": AWAIT_MS})
                placed += 1

        def sample(phase: str) -> None:
            row: dict[str, Any] = {
                "phase": phase,
                "t_s": round(time.monotonic() - t0, 1),
                "rss_mb": round(memory_mib(pid), 1),
                "orders": placed,
                "messages": sum(feed.messages for feed in feeds),
                "feeds_failed": sum(task.done() for task in following),
            }
            samples.append(row)
            print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)

        placing = [asyncio.create_task(place_until_end(lane)) for lane in range(concurrency)]
        try:
            sample("load")
            while time.monotonic() < end:
                await asyncio.sleep(min(sample_s, max(0.0, end - time.monotonic())))
                sample("load")
            await asyncio.gather(*placing)
            for _ in range(IDLE_SAMPLES):
                await asyncio.sleep(sample_s)
                sample("idle")
        finally:
            for task in [*placing, *following]:
                task.cancel()
            errors = await asyncio.gather(*following, return_exceptions=True)
    failures = [str(e) for e in errors if not isinstance(e, asyncio.CancelledError)]
    return {
        "mode": "soak",
        "database": database.kind,
        "minutes": minutes,
        "subscribers": subscribers,
        "concurrency": concurrency,
        "orders": placed,
        "messages": sum(feed.messages for feed in feeds),
        "out_of_order": sum(feed.out_of_order for feed in feeds),
        "feeds_failed": len(failures),
        "first_failure": failures[0] if failures else None,
        **flatness(samples, warm_up),
        "samples": samples,
    }


def flatness(samples: list[dict[str, Any]], warm_up: float) -> dict[str, float]:
    """RSS after warm-up (the first `warm_up` share of the loaded samples): its growth in MB per
    minute (least squares), its lowest and highest, and the RSS once idle."""
    loaded = [s for s in samples if s["phase"] == "load"]
    settled = loaded[int(len(loaded) * warm_up) :]
    ts, rss = [s["t_s"] / 60 for s in settled], [s["rss_mb"] for s in settled]
    mean_t, mean_rss = sum(ts) / len(ts), sum(rss) / len(rss)
    spread = sum((t - mean_t) ** 2 for t in ts)
    slope = (
        sum((t - mean_t) * (r - mean_rss) for t, r in zip(ts, rss, strict=True)) / spread if spread else 0.0
    )
    idle = [s["rss_mb"] for s in samples if s["phase"] == "idle"]
    return {
        "rss_start_mb": loaded[0]["rss_mb"],
        "rss_after_warm_up_mb": rss[0],
        "rss_max_after_warm_up_mb": max(rss),
        "rss_end_mb": rss[-1],
        "growth_mb_per_min_after_warm_up": round(slope, 2),
        "rss_idle_mb": idle[-1] if idle else float("nan"),
    }


def chart(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # half a second to import: here, not where the module is

    samples = report["samples"]
    figure = Figure(figsize=(8, 4))
    axis = figure.subplots()
    axis.plot([s["t_s"] / 60 for s in samples], [s["rss_mb"] for s in samples], marker=".")
    axis.set_xlabel("minutes")
    axis.set_ylabel("server RSS (MB)")
    axis.set_ylim(bottom=0)
    axis.set_title(
        f"{report['subscribers']} sagaFeed subscribers, {report['orders']} orders ({report['database']})"
    )
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--warm-up", type=float, default=0.2, help="share of the run (default 0.2)")
    parser.add_argument("--concurrency", type=int, default=8, help="orders placed at once (default 8)")
    parser.add_argument("--postgres", help="a PostgreSQL server URL to run on; a SQLite file without it")
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--chart", type=Path, help="draw RSS over time into this PNG")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="ordersaga-bench-") as workdir,
        fresh_database(args.postgres, Path(workdir), "soak") as database,
    ):
        cell = (args.minutes, args.subscribers, args.concurrency, args.sample_seconds, args.warm_up)
        report = asyncio.run(run(*cell, database, Path(workdir)))
    report["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    if args.chart is not None:
        chart(report, args.chart)
    workload.emit(report, args.json)


if __name__ == "__main__":
    main()
