"""Webhook POSTs sent from a process of their own, so that delivery takes little core time from the
sagas.

An endpoint that takes every event gets several requests per saga. Sent from the service's process,
each costs that process its signature, its request and its answer in Python and its socket calls in
the kernel (about 0.06 ms an event, `python -m benchmarks.delivery`), under the one interpreter lock
the sagas' event loop and writer thread share. Here the service's relays still decide what is sent and
what each answer means (api/outbound/webhooks.py), and hand a round's requests to a child process,
`python -m api.outbound.sender_process`, in one message over a pipe: per saga, its events in journal
order, each sent once the one before was taken. The child checks the address, signs, sends (wire.
Origin) and answers the round's attempts in one message. What a request costs is spent there, on
whichever core is free.

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

from api.outbound.addresses import GuardedResolver, Reach, reach_problem
from api.outbound.signing import Signer
from api.outbound.wire import Origin

MAX_ERROR = 300
# A child that died within this long of its start is not started again before it has passed: a child
# that cannot start fails each round at once instead of being started for every one.
RESTART_PAUSE_S = 1.0
# Each frame: its length, then a pickled list of messages, each (request id, plain tuples): to the
# child a round (a Destination's fields, its chains, the concurrency) or a URL whose idle connections
# to close (request id -1); from it, each chain's attempts (an Attempt's fields). Plain tuples, as the
# child runs this module as __main__, where its classes have another name than here.
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
            return _failed(chains, f"the sending process did not start: {error}")
        if process is None:
            return _failed(chains, "the sending process stopped; it starts again within a second")
        request_id = self._next_id
        self._next_id += 1
        answer = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        self._queue((request_id, (tuple(to), chains, concurrency)))
        try:
            attempts = await answer
        finally:
            self._answers.pop(request_id, None)
        return attempts or _failed(chains, "the sending process stopped before an answer")

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
                "api.outbound.sender_process",
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
        _write_frame(process.stdin, messages)

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while (answers := await _read_frame(process.stdout)) is not None:
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


def _failed(chains: Sequence[Sequence[Message]], why: str) -> list[list[Attempt]]:
    return [[Attempt(False, None, 0, why[:MAX_ERROR])] for _ in chains]


async def _read_frame(reader: asyncio.StreamReader) -> list[tuple[int, Any]] | None:
    """The next frame's messages, or None once the pipe is closed."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        messages: list[tuple[int, Any]] = pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None
    return messages


def _write_frame(
    pipe: asyncio.WriteTransport | asyncio.StreamWriter, messages: list[tuple[int, Any]]
) -> None:
    frame = pickle.dumps(messages, pickle.HIGHEST_PROTOCOL)
    pipe.write(_HEADER.pack(len(frame)) + frame)


# The child's side.


class _Rounds:
    """What the child keeps from round to round: a signer per secret, and an Origin (its kept-alive
    connections) per URL, reach and connect timeout."""

    # More secrets than endpoints can have had (rotations) since the last clean-out: start afresh.
    MAX_SIGNERS = 256

    def __init__(self) -> None:
        self._signers: dict[str, Signer] = {}
        self._origins: dict[tuple[str, Reach, float], Origin] = {}

    async def send(
        self, to: Destination, chains: Sequence[Sequence[Message]], concurrency: int
    ) -> list[list[Attempt]]:
        """SenderProcess.send's work."""
        refusal = await reach_problem(to.url, to.reach)
        if refusal is not None:
            return _failed(chains, f"not sent: {refusal}")
        signer, origin = self._signer(to.secret), self._origin(to)
        slots = asyncio.Semaphore(concurrency)

        async def send_chain(chain: Sequence[Message]) -> list[Attempt]:
            attempts = []
            async with slots:
                for message_id, body in chain:
                    attempt = await _post(origin, to, signer.headers(message_id, body), body)
                    attempts.append(attempt)
                    if not attempt.ok:
                        break
            return attempts

        return list(await asyncio.gather(*map(send_chain, chains)))

    def close_idle(self, url: str) -> None:
        for key in [key for key in self._origins if key[0] == url]:
            asyncio.ensure_future(self._origins.pop(key).close())

    def _signer(self, secret: str) -> Signer:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) >= self.MAX_SIGNERS:
                self._signers.clear()
            signer = self._signers[secret] = Signer(secret)
        return signer

    def _origin(self, to: Destination) -> Origin:
        key = (to.url, to.reach, to.connect_timeout)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = Origin(to.url, GuardedResolver(to.reach), to.connect_timeout)
        return origin


async def _post(origin: Origin, to: Destination, headers: dict[str, str], body: bytes) -> Attempt:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        status = await origin.post(body, headers, to.timeout)
    except TimeoutError:
        return Attempt(False, None, _ms_since(loop, started), f"no answer within {to.timeout:g} s")
    except Exception as failure:
        # The connection's errors (OSError and its kin), and whatever else it met: the receiver did
        # not take it, which is a failed attempt like any.
        error = f"{type(failure).__name__}: {failure}"[:MAX_ERROR]
        return Attempt(False, None, _ms_since(loop, started), error)
    ok = 200 <= status < 300
    return Attempt(ok, status, _ms_since(loop, started), None if ok else f"answered {status}")


def _ms_since(loop: asyncio.AbstractEventLoop, started: float) -> int:
    return round((loop.time() - started) * 1000)


async def _serve() -> None:
    """Answer the rounds that arrive on stdin, on stdout, until stdin closes."""
    loop = asyncio.get_running_loop()
    requests = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(requests), sys.stdin)
    answers_out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    rounds = _Rounds()
    answers: list[tuple[int, Any]] = []
    in_flight: set[asyncio.Task[None]] = set()

    def flush() -> None:
        _write_frame(answers_out, answers)
        answers.clear()

    async def answer(request_id: int, to: Destination, chains: list[list[Message]], concurrency: int) -> None:
        attempts = await rounds.send(to, chains, concurrency)
        if not answers:
            loop.call_soon(flush)
        answers.append((request_id, [[tuple(attempt) for attempt in chain] for chain in attempts]))

    while (messages := await _read_frame(requests)) is not None:
        for request_id, message in messages:
            if isinstance(message, str):
                rounds.close_idle(message)
                continue
            to, chains, concurrency = message
            task = asyncio.create_task(answer(request_id, Destination(*to), chains, concurrency))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
    # The service closed the pipe (it stopped, or died): what is still on its way has no one to answer.
    for task in in_flight:
        task.cancel()


if __name__ == "__main__":
    import signal

    import uvloop

    # A Ctrl-C at the terminal reaches the whole process group: the service stops, and closing the
    # pipe is what ends this process (with no KeyboardInterrupt traceback in the service's output).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uvloop.run(_serve())
