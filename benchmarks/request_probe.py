"""How a plain request fares beside a load: a GraphQL query sent to a served instance every EVERY_S
seconds until the process is stopped, each answer's latency printed in milliseconds on a line of its
own (`inf` for an error, a refusal or no answer within TIMEOUT_S). It runs in a process of its own,
so that the load's own client, busy with what it receives, does not delay it.

    python -m benchmarks.request_probe http://127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from benchmarks.fullstack import post_graphql

QUERY = "{ sagaMetrics { started } }"
EVERY_S = 0.1
TIMEOUT_S = 30.0


async def probe(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    await post_graphql(session, url, QUERY)
                print(f"{(time.perf_counter() - started) * 1000:.1f}", flush=True)
            except (RuntimeError, TimeoutError, aiohttp.ClientError):
                print("inf", flush=True)
            await asyncio.sleep(EVERY_S)


if __name__ == "__main__":
    asyncio.run(probe(sys.argv[1]))
