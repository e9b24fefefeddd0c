"""The program of the process webhook requests are sent from (api/outbound/sender_process.py says why
and how the service talks to it): it reads rounds from stdin, sends them, writes their attempts to
stdout, and ends when stdin closes.

    python -m api.outbound.sender    # started by the service, never by hand
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

import uvloop

from api.outbound.addresses import Reach, reach_problem
from api.outbound.resolver import GuardedResolver
from api.outbound.sender_process import (
    MAX_ERROR,
    Attempt,
    Destination,
    Message,
    failed,
    read_frame,
    write_frame,
)
from api.outbound.signing import Signer
from api.outbound.wire import ConnectTimeout, Origin


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
        try:
            async with asyncio.timeout(to.connect_timeout):
                refusal = await reach_problem(to.url, to.reach)
        except TimeoutError:
            refusal = f"its host did not resolve within {to.connect_timeout:g} s"
        if refusal is not None:
            return failed(chains, f"not sent: {refusal}")
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
    except ConnectTimeout as timeout:
        return Attempt(False, None, _ms_since(loop, started), str(timeout))
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
    in_flight: dict[int, asyncio.Task[None]] = {}

    def flush() -> None:
        write_frame(answers_out, answers)
        answers.clear()

    def forget(request_id: int, _: asyncio.Task[None]) -> None:
        in_flight.pop(request_id, None)

    async def answer(request_id: int, to: Destination, chains: list[list[Message]], concurrency: int) -> None:
        try:
            attempts = await rounds.send(to, chains, concurrency)
        except Exception as error:
            # Whatever went wrong outside a request (a secret that is not one, say): the round's
            # events are stored for a retry, each delivery's error saying why (webhookDeliveries).
            attempts = failed(chains, f"not sent: {type(error).__name__}: {error}")
        if not answers:
            loop.call_soon(flush)
        answers.append((request_id, [[tuple(attempt) for attempt in chain] for chain in attempts]))

    while (messages := await read_frame(requests)) is not None:
        for request_id, message in messages:
            if isinstance(message, str):
                rounds.close_idle(message)
            elif message is None:  # the service stopped waiting for the round: its requests stop
                if (task := in_flight.get(request_id)) is not None:
                    task.cancel()
            else:
                to, chains, concurrency = message
                task = asyncio.create_task(answer(request_id, Destination(*to), chains, concurrency))
                in_flight[request_id] = task
                task.add_done_callback(partial(forget, request_id))
    # The service closed the pipe (it stopped, or died): what is still on its way has no one to answer.
    for task in in_flight.values():
        task.cancel()


if __name__ == "__main__":
    # What the service had open and could be inherited (uvloop does not close those descriptors for
    # a child, whatever close_fds says), a listening socket among them: not this process's to hold,
    # were it to outlive the service a moment.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    # A Ctrl-C at the terminal reaches the whole process group: the service stops, and closing the
    # pipe is what ends this process (with no KeyboardInterrupt traceback in the service's output).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uvloop.run(_serve())
