"""`ordersaga` (`serve` above all) as a fork of a process that has imported the command already.

A fresh `ordersaga` spends about a second of CPU importing its libraries and the project before it
reads its options, and the tests start about ninety. multiprocessing's fork server imports the command
once per test process; each one is then a fork of it that runs `api.cli.main`, the console script's
entry point, with its own arguments, environment, working directory and output, in a session of its
own. It is a process like any other to the tests (SIGKILL, its pid, its exit status); the imports
are skipped, and its end runs no `atexit` handlers (multiprocessing ends it with `os._exit`, after
flushing stdout and stderr; the service registers none). Most tests of
tests/integration/test_command_line.py, and tests/crash/test_development_mode.py, start the
installed command itself."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

# What `serve` imports before it listens, alembic included (a new database is migrated first). The
# preload is the test process's one fork server's, whoever else starts processes with it.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(
    ["api.cli", "api.subcommands.serve", "api.service", "api.web.app", "alembic.command", "uvicorn.main"]
)


class PreloadedProcess:
    """The part of asyncio.subprocess.Process the tests use (pid, returncode, wait, stdout), for a
    forked `ordersaga`, and `kill`. Its exit status follows asyncio's convention: minus the signal that
    ended it."""

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        stdout: AsyncIterator[bytes],
        stderr: AsyncIterator[bytes] | None = None,
    ) -> None:
        self._process = process
        self.pid = process.pid
        self.stdout, self.stderr = stdout, stderr

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    async def kill(self) -> int:
        """SIGKILL to its process group (its workers with it), then its exit status."""
        if self.returncode is None:
            kill_group(self.pid)
        return await self.wait()

    async def wait(self) -> int:
        """Its exit status, once it has ended; one waiter at a time (the sentinel has one reader)."""
        if self._process.exitcode is None:
            ended = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_reader(self._process.sentinel, ended.set)
            try:
                await ended.wait()
            finally:
                loop.remove_reader(self._process.sentinel)
        self._process.join()
        code = self._process.exitcode
        assert code is not None
        return code


def kill_group(pid: int) -> None:
    """SIGKILL to the process group `pid` leads, or to `pid` alone while it has none yet (a fork just
    started makes its group first thing, before it can start workers); nothing once it has gone."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def start(
    arguments: Sequence[str], environment: Mapping[str, str], directory: Path, *, stderr_apart: bool = False
) -> PreloadedProcess:
    """`ordersaga *arguments`, forked, with `environment` and `directory`: its stdout in the answer's
    `stdout`, its stderr there too or, `stderr_apart`, in `stderr`."""
    outputs = [socket.socketpair() for _ in range(2 if stderr_apart else 1)]
    theirs = [pair[1] for pair in outputs]
    process = _CONTEXT.Process(
        target=_run, args=(list(arguments), dict(environment), str(directory), *theirs)
    )
    process.start()
    for end in theirs:
        end.close()  # the fork has its own copy; an output ends when the fork does
    ours = [_lines(*await asyncio.open_connection(sock=pair[0], limit=2**20)) for pair in outputs]
    return PreloadedProcess(process, *ours)


async def _lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncIterator[bytes]:
    # The writer holds the socket until the output has ended: a writer collected closes it under the
    # reader.
    try:
        async for line in reader:
            yield line
    finally:
        writer.close()


def _run(
    arguments: list[str],
    environment: dict[str, str],
    directory: str,
    stdout: socket.socket,
    stderr: socket.socket | None = None,
) -> None:
    """In the fork: what an exec of the command would have (a session, the environment, the directory,
    stdin on /dev/null, stdout and stderr on their outputs, line by line), then the console script's
    entry point."""
    os.setsid()  # a process group of its own, so that a kill reaches its workers
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(directory)
    with open(os.devnull, "rb") as nothing:
        os.dup2(nothing.fileno(), 0)  # workers (--workers) reopen the stdin they were handed
    os.dup2(stdout.fileno(), 1)
    os.dup2((stderr or stdout).fileno(), 2)
    for output in (stdout, stderr):
        if output is not None:
            output.close()
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
    # And stderr, for its life, replacing what it cannot encode as the interpreter's own stderr does.
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["ordersaga", *arguments]
    from api.cli import main

    main(arguments)
