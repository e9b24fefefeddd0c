"""A real `ordersaga serve` process on a loopback port, with fault injection on, for tests that kill it
with SIGKILL. The process is always killed when its context ends, whatever happened in it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.api.server import TLS, GraphQLClient
from tests.crash import preloaded
from tests.ports import free_port

# A server started afresh, or forked from one that has imported the command.
Process = asyncio.subprocess.Process | preloaded.PreloadedProcess

ORDERSAGA = Path(sys.executable).with_name("ordersaga")
# What `serve` prints once it has bound its port (with `(N workers)` after it, with --workers).
ANNOUNCEMENT = re.compile(r"^GraphiQL: http://[^/\s]+:(\d+)/graphql")
STARTUP_SECONDS = 60


class ServerProcess:
    def __init__(self, process: Process) -> None:
        self.process = process
        self.gql: GraphQLClient  # once the port is known
        self.output: list[str] = []

    async def kill(self) -> None:
        """SIGKILL to the process and any workers of its own: no shutdown, no flush, no goodbye."""
        if self.process.returncode is None:
            preloaded.kill_group(self.process.pid)
        await self.process.wait()

    async def collect_output(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    async def announced_port(self) -> int:
        """The port the server says it has bound (its GraphiQL URL), from its output, kept until then."""
        assert self.process.stdout is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STARTUP_SECONDS):
                async for line in self.process.stdout:
                    self.output.append(line.decode(errors="replace").rstrip())
                    if announced := ANNOUNCEMENT.match(self.output[-1]):
                        return int(announced.group(1))
        raise AssertionError("ordersaga serve did not announce its port:\n" + "\n".join(self.output[-40:]))


@contextlib.asynccontextmanager
async def ordersaga_serve(database_url: str, *options: str) -> AsyncIterator[ServerProcess]:
    """This release's `ordersaga serve`, forked from a process that has imported it
    (tests/crash/preloaded.py)."""
    # On PostgreSQL a restarted process takes over the killed one's sagas once their leases expire:
    # 2 s keeps the tests short. A test's own option comes later, and wins.
    options = ("--enable-fault-injection", "--lease-ttl=2", *options)

    async def fork(arguments: Sequence[str]) -> Process:
        return await preloaded.start(arguments, os.environ, Path.cwd())

    async with _serving(fork, database_url, options, port=None) as server:
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

    # Another release's `serve` may not announce the port it bound: it is given one found free.
    async with _serving(execute, database_url, options, port=free_port()) as server:
        yield server


@contextlib.asynccontextmanager
async def _serving(
    start: Callable[[Sequence[str]], Awaitable[Process]],
    database_url: str,
    options: Sequence[str],
    port: int | None,
) -> AsyncIterator[ServerProcess]:
    """`port` None: the server binds any free port and says which. A port found free beforehand can be
    taken by another test's server before this one binds it, and this test would then talk to that
    server, which answers /healthz as well as its own."""
    address = ["--host", "127.0.0.1", "--port", str(port or 0)]
    server = ServerProcess(await start(["serve", "--database-url", database_url, *address, *options]))
    collecting: asyncio.Task[None] | None = None
    try:
        port = port or await server.announced_port()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, verify=TLS) as http:
            server.gql = GraphQLClient(http)
            collecting = asyncio.create_task(server.collect_output())
            await _wait_until_healthy(server)
            yield server
    finally:
        await server.kill()
        if collecting is not None:
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
