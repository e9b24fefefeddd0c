"""How a plain request fares beside a load: `saga(id) { events { sequence } }` sent to a served
instance every EVERY_S seconds until the process is stopped, each answer on a line of its own: its
latency in milliseconds and its outcome, `ok` for data, else the first error's code (`timeout` for
no answer within TIMEOUT_S, `refused` for a connection or HTTP failure). Stopped (SIGTERM) while a
query waits, it prints how long that one has waited so far, as `unanswered`: the slowest answer may
be the one still awaited. It runs in a process of its own, so that the load's own client, busy with
what it receives, does not delay it.

    python -m benchmarks.request_probe http://127.0.0.1:PORT SAGA_ID
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import aiohttp

from benchmarks.fullstack import EVENTS

EVERY_S = 0.1
TIMEOUT_S = 30.0


async def ask(session: aiohttp.ClientSession, url: str, saga_id: str) -> str:
    """The outcome of one query: `ok`, an error code, `timeout` or `refused`."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            async with session.post(url, json={"query": EVENTS, "variables": {"id": saga_id}}) as response:
                body = await response.json(content_type=None)
    except TimeoutError:
        return "timeout"
    except (aiohttp.ClientError, ValueError):
        return "refused"
    if body.get("errors"):
        return str(body["errors"][0].get("extensions", {}).get("code", "error"))
    return "ok" if body.get("data", {}).get("saga") else "no-data"


async def probe(url: str, saga_id: str) -> None:
    stopped = asyncio.current_task()
    assert stopped is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.cancel)
    async with aiohttp.ClientSession() as session:
        while True:
            started = time.perf_counter()
            try:
                outcome = await ask(session, url, saga_id)
            except asyncio.CancelledError:
                print(f"{(time.perf_counter() - started) * 1000:.1f} unanswered", flush=True)
                return
            print(f"{(time.perf_counter() - started) * 1000:.1f} {outcome}", flush=True)
            try:
                await asyncio.sleep(EVERY_S)
            except asyncio.CancelledError:
                return


if __name__ == "__main__":
    asyncio.run(probe(sys.argv[1], sys.argv[2]))
