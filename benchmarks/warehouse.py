"""A remote warehouse service for the full-stack benchmark, in a process of its own: it answers every
CreateShipment at once with CREATED and a reference, and every CancelShipment with 200, so a saga's
shipment step costs the server one HTTP round trip on loopback and nothing more.

    python -m benchmarks.warehouse PORT

It does not verify signatures (the tests do: tests/warehouse.py): it stands for a warehouse that
answers as fast as it can, so that what is measured is the server's side of the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiohttp.web

from api.outbound.signing import new_secret


async def answer(request: aiohttp.web.Request) -> aiohttp.web.Response:
    command = json.loads(await request.read())
    if command["type"] == "CancelShipment":
        return aiohttp.web.json_response({"status": "CANCELLED"})
    return aiohttp.web.json_response({"status": "CREATED", "reference": f"WMS-{command['shipmentId']}"})


def main() -> None:
    app = aiohttp.web.Application()
    app.router.add_post("/commands", answer)
    aiohttp.web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


@contextlib.asynccontextmanager
async def remote_warehouse(workdir: Path, port: int) -> AsyncIterator[list[str]]:
    """This service running on `port` until the block ends; the `serve` options that send every
    warehouse's commands to it (with a signing secret written into `workdir`)."""
    secret = workdir / "warehouse-secret"
    secret.write_text(new_secret())
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "benchmarks.warehouse", str(port))
    url = f"http://127.0.0.1:{port}/commands"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(url) as probe:  # 405: up, and taking POSTs only
                        if probe.status == 405:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the warehouse service did not start")
        yield ["--warehouse-service-url", url, "--warehouse-service-secret-file", str(secret)]
    finally:
        process.kill()
        await process.wait()


if __name__ == "__main__":
    main()
