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

The child is started on the first round and stops when its pipe closes: when the service stops, and
when it dies (a kill -9 too), so it never outlives the service. If the child dies, the rounds it held
are answered as failed attempts (the relay stores them for a retry: a receiver may see a request it
took again, under the same `webhook-id`, as after any resend), and the next round starts another.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from api.outbound.addresses import Reach

MAX_ERROR = 300
# A child that died within this long of its start is not started again before it has passed: a child
# that cannot start fails each round at once instead of being started for every one.
RESTART_PAUSE_S = 1.0
# Each frame: its length, then a pickled list of messages, each (request id, plain tuples): to the
# child a round (a Destination's fields, its chains, the concurrency) or a URL whose idle connections
# to close (request id -1); from it, each chain's attempts (an Attempt's fields). Plain tuples pickle
# and unpickle fastest.
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


class Attempt(NamedTuple):
    """One POST's outcome: whether the receiver took it (2xx), its status code, how long it took (ms),
    and why it failed."""

    ok: bool
    response_code: int | None
    latency_ms: int
    error: str | None


class SenderProcess:
    """The service's side: sends rounds through the child, starting it when needed."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Lock | None = None
        self._started_at = -RESTART_PAUSE_S
        self._answers: dict[int, asyncio.Future[list[list[Attempt]]]] = {}
        self._outbox: list[tuple[int, Any]] = []
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    async def send(
        self, to: Destination, chains: Sequence[Sequence[Message]], concurrency: int
    ) -> list[list[Attempt]]:
        """Send every chain's messages to `to` in order, each once the one before was taken (2xx),
        stopping at the first that was not, at most `concurrency` chains at once; the attempts made,
        chain by chain: all of them taken, or those taken and the failed one last.

        A URL whose address `reach_problem` refuses (checked before the round), a child that died
        during the round or cannot be started: each chain's answer is one failed attempt saying so."""
        if not chains:
            return []
        try:
            process = await self._running()
        except OSError as error:
            return failed(chains, f"the sending process did not start: {error}")
        if process is None:
            return failed(chains, "the sending process stopped; it starts again within a second")
        request_id = self._next_id
        self._next_id += 1
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        self._queue((request_id, (tuple(to), chains, concurrency)))
        try:
            attempts = await answer
        finally:
            self._answers.pop(request_id, None)
        return attempts or failed(chains, "the sending process stopped before an answer")

    def close_idle(self, url: str) -> None:
        """Have the child close its idle connections to `url` (those in use close as their requests
        end)."""
        if self._process is not None and self._process.returncode is None:
            self._queue((-1, url))

    async def stop(self) -> None:
        """Close the pipe, so that the child ends, and wait for it (killed if it takes long)."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

    async def _running(self) -> asyncio.subprocess.Process | None:
        if self._process is not None and self._process.returncode is None:
            return self._process
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._process is not None and self._process.returncode is None:
                return self._process
            if time.monotonic() - self._started_at < RESTART_PAUSE_S:
                return None
            self._started_at = time.monotonic()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "api.outbound.sender",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            self._reader = asyncio.create_task(self._read_answers(self._process), name="webhook-sender")
            return self._process

    def _queue(self, message: tuple[int, Any]) -> None:
        # Messages queued in one turn of the event loop go out in one write.
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(message)

    def _flush(self) -> None:
        messages, self._outbox = self._outbox, []
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            self._settle([request_id for request_id, _ in messages], [])
            return
        write_frame(process.stdin, messages)

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while (answers := await read_frame(process.stdout)) is not None:
                for request_id, chains in answers:
                    self._settle([request_id], [[Attempt(*attempt) for attempt in chain] for chain in chains])
        finally:
            # The pipe closed: the child ended (or died); the rounds it held have no answer.
            if self._process is process:
                self._process = None
            self._settle(list(self._answers), [])

    def _settle(self, request_ids: list[int], attempts: list[list[Attempt]]) -> None:
        """Answer the rounds `request_ids` with `attempts` (none: the child did not answer)."""
        for request_id in request_ids:
            answer = self._answers.get(request_id)
            if answer is not None and not answer.done():
                answer.set_result(attempts)


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
