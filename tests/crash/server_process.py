"""A real `ordersaga serve` process on a loopback port, with fault injection on, for tests that kill it
with SIGKILL. The process is always killed when its context ends, whatever happened in it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.api.server import TLS, GraphQLClient
from tests.crash import preloaded

# A server started afresh, or forked from one that has imported the command.
Process = asyncio.subprocess.Process | preloaded.PreloadedProcess

ORDERSAGA = Path(sys.executable).with_name("ordersaga")
STARTUP_SECONDS = 60


class ServerProcess:
    def __init__(self, process: Process, gql: GraphQLClient) -> None:
        self.process = process
        self.gql = gql
        self.output: list[str] = []

    async def kill(self) -> None:
        """SIGKILL to the process and any workers of its own: no shutdown, no flush, no goodbye."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        await self.process.wait()

    async def collect_output(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def ordersaga_serve(database_url: str, *options: str) -> AsyncIterator[ServerProcess]:
    """This release's `ordersaga serve`, forked from a process that has imported it
    (tests/crash/preloaded.py)."""
    # On PostgreSQL a restarted process takes over the killed one's sagas once their leases expire:
    # 2 s keeps the tests short. A test's own option comes later, and wins.
    options = ("--enable-fault-injection", "--lease-ttl=2", *options)

    async def fork(arguments: Sequence[str]) -> Process:
        return await preloaded.start(arguments, os.environ, Path.cwd())

    async with _serving(fork, database_url, options) as server:
        yield server


@contextlib.asynccontextmanager
async def serve_process(
    command: Sequence[str], database_url: str, *options: str, **spawn: Any
) -> AsyncIterator[ServerProcess]:
    """`command serve` on `database_url` and a free loopback port, with `options`, until healthy;
    `spawn` goes to the process (`cwd`, `env`: another release's source, say)."""

    async def execute(arguments: Sequence[str]) -> Process:
        return await asyncio.create_subprocess_exec(
            *command,
            *arguments,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, so that a kill reaches its workers
            **spawn,
        )

    async with _serving(execute, database_url, options) as server:
        yield server


@contextlib.asynccontextmanager
async def _serving(
    start: Callable[[Sequence[str]], Awaitable[Process]], database_url: str, options: Sequence[str]
) -> AsyncIterator[ServerProcess]:
    port = _free_port()
    address = ["--host", "127.0.0.1", "--port", str(port)]
    process = await start(["serve", "--database-url", database_url, *address, *options])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, verify=TLS) as http:
        server = ServerProcess(process, GraphQLClient(http))
        collecting = asyncio.create_task(server.collect_output())
        try:
            await _wait_until_healthy(server)
            yield server
        finally:
            await server.kill()
            await collecting


async def _wait_until_healthy(server: ServerProcess) -> None:
    for _ in range(STARTUP_SECONDS * 10):
        if server.process.returncode is not None:
            break
        with contextlib.suppress(httpx.TransportError):
            if (await server.gql.http.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.1)  # let the last of its output arrive
    raise AssertionError("ordersaga serve did not become healthy:\n" + "\n".join(server.output[-40:]))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
