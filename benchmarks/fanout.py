"""Live updates fanned out: many `sagaFeed` subscribers over WebSocket, a few sagas placed, every
transition delivered to every subscriber in order; the server's CPU per message delivered.

    python -m benchmarks.fanout --subscribers 1000 --sagas 10 [--per-socket N] [--json F]
                                [--postgres URL]

Each subscriber is a graphql-transport-ws subscription (aiohttp; one connection each, or
--per-socket of them on one connection) following `sagaFeed { sequence type status saga { id
status } }`, so every message also carries the saga as it is when sent. Probe sagas, placed until
every subscriber has seen one end, tell when all the subscriptions are live; then the measured sagas
are placed, and the cell waits until every subscriber has seen each of them finish (bounded by
--timeout). A saga's messages must arrive as its journal holds them: sequences 1, 2, ... up to its
terminal transition, none missing, none repeated. While the messages go out, a plain query
(`saga(id) { events { sequence } }`, benchmarks/request_probe.py) is sent every 0.1 s from another
process: its latencies (p50, p99, max) and any errors tell whether requests keep their share of the
server. The server's resident memory is reported at the end (and its peak).

    python -m benchmarks.fanout --subscribers 10000 --per-socket 50 --sagas 10
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import workload
from benchmarks.databases import Database, fresh_database
from benchmarks.fullstack import (
    AWAIT_MS,
    PLACE,
    memory_mib,
    post_graphql,
    served,
    server_cpu_s,
    stock_catalog,
)

FEED = "subscription { sagaFeed { sequence type status saga { id status } } }"
PROTOCOL = "graphql-transport-ws"
TERMINAL = {"COMPLETED", "FAILED"}


class Subscriber:
    """One connection's feed: the sequences it received per saga, and when the awaited sagas ended."""

    def __init__(self) -> None:
        self.received: dict[str, list[int]] = {}
        self._awaited: set[str] = set()
        self._ended: set[str] = set()
        self.subscribed = asyncio.Event()
        self.done = asyncio.Event()

    @property
    def live(self) -> bool:
        """It has seen a saga end, so its subscription was registered before that saga's end."""
        return bool(self._ended)

    def await_end_of(self, saga_ids: set[str]) -> None:
        self.done.clear()
        self._awaited = saga_ids - self._ended
        if not self._awaited:
            self.done.set()

    def receive(self, update: dict[str, Any]) -> None:
        saga_id = update["saga"]["id"]
        self.received.setdefault(saga_id, []).append(update["sequence"])
        if update["status"] in TERMINAL:
            self._ended.add(saga_id)
            self._awaited.discard(saga_id)
            if not self._awaited:
                self.done.set()

    def in_order(self, saga_id: str) -> bool:
        sequences = self.received.get(saga_id, [])
        return saga_id in self._ended and sequences == list(range(1, len(sequences) + 1))


async def follow(feeds: list[Subscriber], session: aiohttp.ClientSession, url: str) -> None:
    """One graphql-transport-ws connection carrying a `sagaFeed` subscription for each of `feeds`."""
    async with session.ws_connect(url, protocols=(PROTOCOL,), max_msg_size=0) as socket:
        await socket.send_json({"type": "connection_init"})
        ack = await socket.receive_json()
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        for n, feed in enumerate(feeds):
            await socket.send_json({"id": str(n), "type": "subscribe", "payload": {"query": FEED}})
            feed.subscribed.set()
        async for frame in socket:
            message = json.loads(frame.data)
            if message.get("type") != "next" or "errors" in message["payload"]:
                raise RuntimeError(f"the feed failed: {message}")
            feeds[int(message["id"])].receive(message["payload"]["data"]["sagaFeed"])


@contextlib.asynccontextmanager
async def requests_probed(url: str, saga_id: str) -> AsyncIterator[list[tuple[float, str]]]:
    """While the block runs, benchmarks/request_probe.py asks for `saga_id`'s events every 0.1 s
    from a process of its own; its answers (latency in ms, outcome: `ok` or an error code) fill the
    list yielded once the block is left."""
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.request_probe", url, saga_id, stdout=asyncio.subprocess.PIPE
    )
    answers: list[tuple[float, str]] = []
    try:
        yield answers
    finally:
        probe.terminate()
        out, _ = await probe.communicate()
        for line in out.decode().splitlines():
            latency, outcome = line.split()
            answers.append((float(latency), outcome))


def probe_figures(answers: list[tuple[float, str]]) -> dict[str, Any]:
    """The probe's answers summed up: how many, latency p50/p99/max (ms), errors by code."""
    latencies = sorted(latency for latency, _ in answers)

    def quantile(pct: float) -> float:
        return round(workload.percentile(latencies, pct), 1) if latencies else 0.0

    errors: dict[str, int] = {}
    for _, outcome in answers:
        if outcome not in ("ok", "unanswered"):
            errors[outcome] = errors.get(outcome, 0) + 1
    return {
        "requests_during_fanout": len(answers),
        # Still waiting when the messages were all delivered: its latency so far is counted.
        "request_unanswered_at_end": sum(outcome == "unanswered" for _, outcome in answers),
        "request_p50_ms": quantile(50),
        "request_p99_ms": quantile(99),
        "request_max_ms": round(latencies[-1], 1) if latencies else 0.0,
        "request_errors": errors,
    }


def server_rss_mib(pid: int) -> dict[str, float]:
    """The process's resident memory now and at its peak, in MiB (Linux)."""
    return {
        "server_rss_mib": round(memory_mib(pid), 1),
        "server_peak_rss_mib": round(memory_mib(pid, "VmHWM"), 1),
    }


async def run(
    subscribers: int, sagas: int, workdir: Path, database: Database, limit_s: float, per_socket: int = 1
) -> dict[str, Any]:
    """The cell's figures; a feed that failed (an error in its stream, a closed connection) or a
    delivery that did not finish within `limit_s` is reported as `error`, not raised, so that a
    whole benchmark run still writes its report."""
    cell: dict[str, Any] = {
        "mode": "fanout",
        "database": database.kind,
        "subscribers": subscribers,
        "subscriptions_per_socket": per_socket,
        "sagas": sagas,
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
    }
    try:
        return cell | await _deliver(subscribers, sagas, workdir, database, limit_s, per_socket)
    except (RuntimeError, TimeoutError, aiohttp.ClientError) as failure:
        return cell | {"error": str(failure) or type(failure).__name__, "in_order": False, "correct": False}


async def _deliver(
    subscribers: int, sagas: int, workdir: Path, database: Database, limit_s: float, per_socket: int
) -> dict[str, Any]:
    skus = workload.skus(False)
    async with served(workdir, database) as (url, pid):
        ws_url = url.replace("http://", "ws://", 1)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await stock_catalog(session, url, skus, workload.stock_per_sku(sagas + PROBES_AT_MOST))
            feeds = [Subscriber() for _ in range(subscribers)]
            sockets = [feeds[n : n + per_socket] for n in range(0, subscribers, per_socket)]
            following = [asyncio.create_task(follow(carried, session, ws_url)) for carried in sockets]
            try:
                async with asyncio.timeout(limit_s):
                    await _first_error_or(asyncio.gather(*(f.subscribed.wait() for f in feeds)), following)
                    for _ in range(PROBES_AT_MOST):
                        (probe,) = await _place_and_deliver(
                            session, url, feeds, following, [skus[0]], PROBE_WAIT_S
                        )
                        if all(feed.live for feed in feeds):
                            break
                    else:
                        raise RuntimeError("the subscriptions did not all become live")
                    cpu0, t0 = server_cpu_s(pid), time.perf_counter()
                    placing = [skus[i % len(skus)] for i in range(sagas)]
                    async with requests_probed(url, probe) as answers:
                        measured = await _place_and_deliver(session, url, feeds, following, placing, None)
                    elapsed, cpu = time.perf_counter() - t0, server_cpu_s(pid) - cpu0
                    memory = server_rss_mib(pid)
            finally:
                for task in following:
                    task.cancel()
                await asyncio.gather(*following, return_exceptions=True)
    messages = sum(len(feed.received[saga_id]) for feed in feeds for saga_id in measured)
    in_order = all(feed.in_order(saga_id) for feed in feeds for saga_id in measured)
    return {
        "messages": messages,
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(messages / elapsed, 1),
        "server_cpu_ms_per_message": round(cpu * 1000 / messages, 4),
        # A plain query sent every 0.1 s from another process while the messages went out.
        **probe_figures(answers),
        **memory,
        "in_order": in_order,
        "correct": in_order and messages > 0,
    }


# A subscription goes live once the server has run it, shortly after its request was sent; a probe
# saga tells when all are, and the next probe is placed only if one was missed within PROBE_WAIT_S.
PROBES_AT_MOST = 5
PROBE_WAIT_S = 30


async def _place_and_deliver(
    session: aiohttp.ClientSession,
    url: str,
    feeds: list[Subscriber],
    following: list[asyncio.Task[None]],
    skus: list[str],
    wait_s: float | None,
) -> list[str]:
    """Place one saga per SKU given and wait until every subscriber has seen all of them end (or,
    with `wait_s`, no longer than that)."""

    async def place(n: int, sku: str) -> str:
        order = {
            "customerId": f"fanout-{n}",
            "lines": [{"sku": sku, "quantity": 1}],
            "awaitOutcomeMs": AWAIT_MS,
        }
        placed = await post_graphql(session, url, PLACE, input=order)
        return str(placed["placeOrder"]["saga"]["id"])

    saga_ids = await asyncio.gather(*(place(n, sku) for n, sku in enumerate(skus)))
    for feed in feeds:
        feed.await_end_of(set(saga_ids))
    await _first_error_or(asyncio.gather(*(feed.done.wait() for feed in feeds)), following, wait_s)
    return saga_ids


async def _first_error_or(
    waiting: asyncio.Future[Any], following: list[asyncio.Task[None]], wait_s: float | None = None
) -> None:
    """Wait for `waiting` (no longer than `wait_s`, if given); a subscriber whose connection failed
    would never get there, so its error ends the wait instead."""
    try:
        await asyncio.wait([waiting, *following], timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        for task in following:
            if task.done():
                task.result()
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)


def main() -> None:
    parser = workload.cell_arguments(__doc__, sagas=10)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds, for the whole cell")
    parser.add_argument(
        "--per-socket", type=int, default=1, help="sagaFeed subscriptions carried by each WebSocket"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="ordersaga-bench-") as workdir,
        fresh_database(args.postgres, Path(workdir), "fanout") as database,
    ):
        report = asyncio.run(
            run(args.subscribers, args.sagas, Path(workdir), database, args.timeout, args.per_socket)
        )
    workload.emit(report, args.json)


if __name__ == "__main__":
    main()
