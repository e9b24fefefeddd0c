"""Ceilings the saga figures are read against.

    python benchmarks/ceilings.py commit --seconds 3 --json out.json
    python benchmarks/ceilings.py http --url http://127.0.0.1:PORT/graphql \\
        --concurrency 64 --seconds 5 --query '{ __typename }'

``commit``: single-row INSERT + COMMIT in a loop on an SQLite file in WAL mode with
synchronous=FULL, i.e. one fsync per commit: no durable saga engine on this disk
can commit more often than this.

``http``: a lean keep-alive load generator (aiohttp, one pooled connection per
in-flight request) posting a GraphQL document; against a trivial query it gives
the request rate the HTTP + GraphQL stack alone allows.  ``post_loop`` and
``run_load`` are importable so a harness can drive other operations (e.g.
placeOrder with a fresh idempotency key per call) the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.workload import percentile

# Hard caps so a mistyped argument cannot turn a measurement into a soak test.
MAX_SECONDS = 300.0
MAX_COUNT = 10_000_000


# --- commit ceiling ---------------------------------------------------------


def commit_ceiling(seconds: float, workdir: Path, max_commits: int = MAX_COUNT) -> dict[str, Any]:
    seconds = min(seconds, MAX_SECONDS)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="commit-ceiling-") as tmp:
        path = Path(tmp) / "ceiling.sqlite"
        # Autocommit off at the driver level; each loop turn is one explicit transaction.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        latencies: list[float] = []
        payload = "x" * 100
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline and len(latencies) < max_commits:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
            conn.execute("COMMIT")
            t = time.perf_counter()
            latencies.append(t - now)
            now = t
        elapsed = now - start
        cpu = time.process_time() - cpu0
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        conn.close()
    latencies.sort()
    n = len(latencies)
    return {
        "ceiling": "commit",
        "sqlite": sqlite3.sqlite_version,
        "journal_mode": journal,
        "synchronous": synchronous,
        "commits": n,
        "elapsed_s": round(elapsed, 3),
        "commits_per_s": round(n / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "cpu_s_per_commit": round(cpu / n, 6),
        # Other work on the machine skews the figure; this says how much there was.
        "loadavg_1m_before": round(load_before, 2),
    }


# --- HTTP load --------------------------------------------------------------


def require_loopback(url: str) -> None:
    """Refuse anything but this machine: the generator is for local targets only."""
    host = urlsplit(url).hostname
    if host is None:
        raise ValueError(f"no host in {url!r}")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve {host}: {e}") from e
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ValueError(f"{host} is not a loopback address; refusing to load it")


@dataclass
class LoadStats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    # A few distinct error descriptions, to tell a broken target from a slow one.
    error_samples: list[str] = field(default_factory=list)
    started: int = 0

    def error(self, description: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(description[:300])


Payload = Callable[[int], dict[str, Any]]


def graphql_ok(status: int, body: bytes) -> str | None:
    """None when the response is a GraphQL success, else why not."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        document = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    if document.get("errors"):
        return f"GraphQL errors: {json.dumps(document['errors'])[:200]}"
    return None


async def post_loop(
    session: Any,
    url: str,
    payload: Payload,
    deadline: float,
    max_requests: int,
    stats: LoadStats,
    check: Callable[[int, bytes], str | None] = graphql_ok,
) -> None:
    """One in-flight request at a time until the deadline or the shared request cap.

    ``session`` is an ``aiohttp.ClientSession``; ``payload(i)`` builds the JSON body
    of the i-th request overall, so callers can vary variables per call.
    """
    headers = {"Content-Type": "application/json"}
    loop = asyncio.get_running_loop()
    while loop.time() < deadline and stats.started < max_requests:
        i = stats.started
        stats.started += 1
        body = json.dumps(payload(i)).encode()
        t0 = loop.time()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                problem = check(response.status, content)
        except Exception as e:  # a refused or reset connection is a result, not a crash
            problem = f"{type(e).__name__}: {e}"
        if problem is None:
            stats.latencies.append(loop.time() - t0)
        else:
            stats.error(problem)


async def run_load(
    url: str,
    payload: Payload,
    concurrency: int,
    seconds: float,
    max_requests: int = MAX_COUNT,
    check: Callable[[int, bytes], str | None] = graphql_ok,
) -> dict[str, Any]:
    import aiohttp

    require_loopback(url)
    seconds = min(seconds, MAX_SECONDS)
    stats = LoadStats()
    # One keep-alive connection per worker, reused for every request it makes.
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=max(30.0, seconds))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        cpu0, start = time.process_time(), loop.time()
        deadline = start + seconds
        await asyncio.gather(
            *(
                post_loop(session, url, payload, deadline, min(max_requests, MAX_COUNT), stats, check)
                for _ in range(concurrency)
            )
        )
        elapsed = loop.time() - start
        cpu = time.process_time() - cpu0
    latencies = sorted(stats.latencies)
    return {
        "ceiling": "http",
        "url": url,
        "concurrency": concurrency,
        "requests": len(latencies) + stats.errors,
        "ok": len(latencies),
        "errors": stats.errors,
        "error_samples": stats.error_samples,
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        # The generator's own cost, to see when it rather than the target is the limit.
        "client_cpu_s_per_request": round(cpu / max(1, len(latencies) + stats.errors), 6),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    commit = sub.add_parser("commit", help="SQLite WAL + synchronous=FULL commits/s")
    commit.add_argument("--seconds", type=float, default=3.0)
    commit.add_argument("--max-commits", type=int, default=MAX_COUNT)
    commit.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="directory on the disk under test (default: the system temp dir)",
    )
    commit.add_argument("--json", type=Path)
    http = sub.add_parser("http", help="GraphQL POSTs/s over keep-alive connections")
    http.add_argument("--url", required=True)
    http.add_argument("--concurrency", type=int, default=64)
    http.add_argument("--seconds", type=float, default=5.0)
    http.add_argument("--max-requests", type=int, default=MAX_COUNT)
    http.add_argument("--query", default="{ __typename }")
    http.add_argument("--variables", default=None, help="JSON object")
    http.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    if args.which == "commit":
        workdir = args.workdir or Path(tempfile.gettempdir())
        result = commit_ceiling(args.seconds, workdir, args.max_commits)
    else:
        body: dict[str, Any] = {"query": args.query}
        if args.variables:
            body["variables"] = json.loads(args.variables)
        load = run_load(args.url, lambda _: body, args.concurrency, args.seconds, args.max_requests)
        runner: Callable[[Any], dict[str, Any]] = asyncio.run
        try:
            # Optional: a cheaper event loop leaves more of the machine to the target.
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        result = runner(load)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result.get("errors", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
