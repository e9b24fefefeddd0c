"""Webhook POSTs sent from a process of their own, so that delivery takes little core time from the
sagas.

An endpoint that takes every event gets several requests per saga. Sent from the service's process,
each costs that process its signature, its request and its answer in Python and its socket calls in
the kernel (about 0.06 ms an event, `python -m benchmarks.delivery`), under the one interpreter lock
the sagas' event loop and writer thread share. Here the service's relays still decide what is sent and
what each answer means (api/outbound/webhooks.py), and hand a round's requests to a child process
(its program: api/outbound/sender.py) in one message over a pipe: per saga, its events in journal
order, each sent once the one before was taken. The child checks the address, signs, sends
(wire.Origin) and answers the round's attempts in one message. What a request costs is spent there,
on whichever core is free.

The child is started by the first round and ends when its pipe closes: when the service stops, and
when it dies (a kill -9 too); it holds none of the service's descriptors meanwhile. If the child
dies, or hangs past the longest a round's requests may take (it is then killed), the rounds it held
are answered as failed attempts (the relay stores them for a retry: a receiver may see a request it
took again, under the same `webhook-id`, as after any resend), and the next round starts another. A
round whose relay stops waiting for it is cancelled in the child too.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from api.outbound.addresses import Reach

MAX_ERROR = 300
# A child that died within this long of its start is not started again before it has passed: a child
# that cannot start fails each round at once instead of being started for every one.
RESTART_PAUSE_S = 1.0
# Beyond the longest its requests may take, how long the child has to answer a round.
ANSWER_SLACK_S = 5.0
# The directory the `api` package is in: where the child imports the service's code from.
_PROJECT = Path(__file__).resolve().parents[2]
# Each frame: its length, then a pickled list of messages, each (request id, plain tuples): to the
# child a round (a Destination's fields, its chains, the concurrency), None to cancel that round, or
# a URL whose idle connections to close (request id -1); from it, each chain's attempts (an
# Attempt's fields). Plain tuples pickle and unpickle fastest.
_HEADER = struct.Struct("!I")

Message = tuple[str, bytes]  # one request: its message id (the `webhook-id`) and its JSON body


class Destination(NamedTuple):
    """Where a round's requests go: `url`, connected to only at addresses `reach` allows, within
    `connect_timeout` seconds and each request answered within `timeout`; signed with `secret`."""

    url: str
    reach: Reach
    connect_timeout: float
    timeout: float
    secret: str

    def __repr__(self) -> str:
        # Never the secret: a repr can end up in a log line.
        return f"Destination(url={self.url!r}, reach={self.reach!r})"


class Attempt(NamedTuple):
    """One POST's outcome: whether the receiver took it (2xx), its status code, how long it took (ms),
    and why it failed."""

    ok: bool
    response_code: int | None
    latency_ms: int
    error: str | None


class _Child:
    """One started child: its process, and the rounds sent to it that await their answers."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answers: dict[int, asyncio.Future[list[list[Attempt]]]] = {}
        self.reader: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def settle(self, request_id: int, attempts: list[list[Attempt]]) -> None:
        """Answer round `request_id` with `attempts` (none: the child did not answer it)."""
        answer = self.answers.get(request_id)
        if answer is not None and not answer.done():
            answer.set_result(attempts)


class SenderProcess:
    """The service's side: sends rounds through the child, starting it when needed."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None
        self._started_at = -RESTART_PAUSE_S
        self._closed = False
        self._outbox: list[tuple[int, Any]] = []
        self._next_id = 0

    async def send(
        self, to: Destination, chains: Sequence[Sequence[Message]], concurrency: int
    ) -> list[list[Attempt]]:
        """Send every chain's messages to `to` in order, each once the one before was taken (2xx),
        stopping at the first that was not, at most `concurrency` chains at once; the attempts made,
        chain by chain: all of them taken, or those taken and the failed one last. Cancelled, the
        round's requests are cancelled in the child too (one on the wire may have been taken).

        A URL whose address `reach_problem` refuses (checked before the round), a child that died
        during the round, could not be started, failed on the round or did not answer it within
        the time its requests may take (it is then killed): each chain's answer is one failed
        attempt saying so."""
        # Started by a relay's first round, events or none: what the child's start costs (its imports,
        # about a third of a second of CPU) is not paid while the first events wait.
        try:
            child = await self._running()
        except OSError as error:
            child, why = None, f"the sending process did not start: {error}"
        else:
            why = "the sending process is not running; it is started again within a second"
        if not chains:
            return []
        if child is None:
            return failed(chains, why)
        request_id = self._next_id
        self._next_id += 1
        answer = asyncio.get_running_loop().create_future()
        child.answers[request_id] = answer
        self._queue((request_id, (tuple(to), chains, concurrency)))
        # The longest the child may take: the address checked within the connect timeout, then
        # `concurrency` chains at a time, each request within the timeout. A child past it has hung
        # (or was stopped).
        waves = -(-len(chains) // concurrency)
        ceiling = to.connect_timeout + waves * max(map(len, chains)) * to.timeout + ANSWER_SLACK_S
        try:
            async with asyncio.timeout(ceiling):
                attempts = await answer
        except TimeoutError:
            child.process.kill()  # its pipe closes, which fails the other rounds it held
            return failed(chains, f"the sending process did not answer within {ceiling:g} s; it was stopped")
        except asyncio.CancelledError:
            if child.running:
                self._queue((request_id, None))  # the child cancels the round's requests
            raise
        finally:
            child.answers.pop(request_id, None)
        return attempts or failed(chains, "the sending process stopped before an answer")

    def close_idle(self, url: str) -> None:
        """Have the child close its idle connections to `url` (those in use close as their requests
        end)."""
        if self._child is not None and self._child.running:
            self._queue((-1, url))

    async def stop(self) -> None:
        """Close the pipe, so that the child ends, and wait for it (killed if it takes long); no
        child is started afterwards."""
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:  # not while one is being started
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        assert child.process.stdin is not None
        child.process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await child.process.wait()
        except TimeoutError:
            child.process.kill()
            await child.process.wait()
        if child.reader is not None:
            await asyncio.wait([child.reader])

    async def _running(self) -> _Child | None:
        if self._child is not None and self._child.running:
            return self._child
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._child is not None and self._child.running:
                return self._child
            if self._closed or time.monotonic() - self._started_at < RESTART_PAUSE_S:
                return None
            self._started_at = time.monotonic()
            # -P and the project's own directory first: the child runs the service's code, whatever
            # the working directory holds.
            path = os.pathsep.join(filter(None, [str(_PROJECT), os.environ.get("PYTHONPATH")]))
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "api.outbound.sender",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": path},
            )
            self._child = _Child(process)
            self._child.reader = asyncio.create_task(self._read_answers(self._child), name="webhook-sender")
            return self._child

    def _queue(self, message: tuple[int, Any]) -> None:
        # Messages queued in one turn of the event loop go out in one write.
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(message)

    def _flush(self) -> None:
        messages, self._outbox = self._outbox, []
        child = self._child
        stdin = None if child is None else child.process.stdin
        if child is None or stdin is None or stdin.is_closing():
            return  # the reader fails every round the child held, these too
        write_frame(stdin, messages)

    async def _read_answers(self, child: _Child) -> None:
        assert child.process.stdout is not None
        try:
            while (answers := await read_frame(child.process.stdout)) is not None:
                for request_id, chains in answers:
                    child.settle(request_id, [[Attempt(*attempt) for attempt in chain] for chain in chains])
        finally:
            # The pipe closed: the child ended (or died); the rounds it held have no answer.
            if self._child is child:
                self._child = None
            for request_id in list(child.answers):
                child.settle(request_id, [])


def failed(chains: Sequence[Sequence[Message]], why: str) -> list[list[Attempt]]:
    """Each chain's answer when none of it was sent: one failed attempt saying `why`."""
    return [[Attempt(False, None, 0, why[:MAX_ERROR])] for _ in chains]


async def read_frame(reader: asyncio.StreamReader) -> list[tuple[int, Any]] | None:
    """The next frame's messages (see _HEADER), or None once the pipe is closed."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        messages: list[tuple[int, Any]] = pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None
    return messages


def write_frame(pipe: asyncio.WriteTransport | asyncio.StreamWriter, messages: list[tuple[int, Any]]) -> None:
    frame = pickle.dumps(messages, pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(frame)) + frame)
