"""The webhook receiver of `benchmarks.fullstack --webhook`, in a process of its own:

    python -m benchmarks.webhook_receiver --port 8765

It takes every POST to /hook (204) and notes when each `webhook-id` first arrived (time.monotonic,
which every process on the machine reads alike); GET /arrived answers
`{"requests": n, "arrived": {id: seconds}}`. It does not verify signatures: the tests do. It runs
apart from the load generator so that its work delays neither the clients' requests nor their
timing, as a receiver elsewhere would not.
"""

from __future__ import annotations

import argparse
import time

import aiohttp.web


def application() -> aiohttp.web.Application:
    arrived: dict[str, float] = {}
    requests = 0

    async def take(request: aiohttp.web.Request) -> aiohttp.web.Response:
        nonlocal requests
        await request.read()
        requests += 1
        arrived.setdefault(request.headers["webhook-id"], time.monotonic())
        return aiohttp.web.Response(status=204)

    async def report(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"requests": requests, "arrived": arrived})

    app = aiohttp.web.Application()
    app.router.add_post("/hook", take)
    app.router.add_get("/arrived", report)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    aiohttp.web.run_app(application(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
