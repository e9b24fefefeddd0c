"""The process webhook POSTs go out from (api/outbound/sender_process.py), as real processes against a
receiver on loopback that verifies every request with the `standardwebhooks` package: each chain is
sent in order, signed, until a request is not taken; an address the reach refuses is not sent to; a
child killed while a request is on the wire fails its round and the next round starts another; and a
service killed with SIGKILL leaves no sending process behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from api.outbound.addresses import Reach
from api.outbound.sender_process import (
    ANSWER_SLACK_S,
    RESTART_PAUSE_S,
    Attempt,
    Destination,
    Message,
    SenderProcess,
)
from api.outbound.signing import new_secret
from tests.polling import eventually
from tests.receiver import Receiver, unconnectable

LOOPBACK = Reach(loopback=True)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it ended meanwhile
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descriptors(pid: int) -> set[str]:
    """What process `pid`'s file descriptors refer to (`socket:[inode]`, paths, pipes; Linux)."""
    return {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def to(receiver: Receiver, reach: Reach = LOOPBACK) -> Destination:
    assert receiver.secret is not None
    return Destination(receiver.url, reach, 2.0, 10.0, receiver.secret)


def message(message_id: str) -> Message:
    return message_id, b'{"type": "SagaStarted", "data": {"sagaId": "s", "sequence": 1}}'


async def test_each_chain_is_sent_in_order_signed_until_a_request_is_not_taken() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    process = SenderProcess()
    chains = [[message(f"msg_{n}_{i}") for i in range(3)] for n in range(20)]
    async with receiver.running():
        try:
            sent = await process.send(to(receiver), chains, 4)
            receiver.answer = 500
            refused = await process.send(to(receiver), [[message("msg_x_0"), message("msg_x_1")]], 4)
        finally:
            await process.stop()
    assert [[attempt.response_code for attempt in attempts] for attempts in sent] == [[200] * 3] * 20
    assert all(attempt.ok and attempt.error is None for attempts in sent for attempt in attempts)
    assert receiver.refused == []  # every signature verified
    ids = [r.id for r in receiver.received]
    for n in range(20):
        mine = [i for i in ids if i.startswith(f"msg_{n}_")]
        assert mine == [f"msg_{n}_{i}" for i in range(3)]
    # The first request not taken ends its chain: the next is not sent.
    assert refused == [[Attempt(False, 500, refused[0][0].latency_ms, "answered 500")]]
    assert "msg_x_1" not in ids


async def test_an_address_the_reach_refuses_is_not_sent_to() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    process = SenderProcess()
    async with receiver.running():
        try:
            # Loopback is not public: without the reach allowing it, nothing goes there.
            refused = await process.send(to(receiver, Reach()), [[message("msg_1")], [message("msg_2")]], 4)
        finally:
            await process.stop()
    assert [len(attempts) for attempts in refused] == [1, 1]
    assert all(not a[0].ok and a[0].error is not None and "not sent" in a[0].error for a in refused)
    assert receiver.arrivals == []


async def test_no_connection_within_the_connect_timeout_is_said_as_that() -> None:
    process = SenderProcess()
    try:
        with unconnectable() as url:
            destination = Destination(url, LOOPBACK, 0.5, 3.0, new_secret())
            ((attempt,),) = await process.send(destination, [[message("msg_1")]], 4)
    finally:
        await process.stop()
    assert (attempt.ok, attempt.response_code, attempt.error) == (False, None, "no connection within 0.5 s")
    assert 500 <= attempt.latency_ms < 1500


async def test_a_child_killed_mid_request_fails_its_round_and_the_next_round_starts_another() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    receiver.held = asyncio.Event()
    process = SenderProcess()
    others = set(children(os.getpid()))  # this test process's, started by earlier tests
    async with receiver.running():
        try:
            on_the_wire = asyncio.create_task(process.send(to(receiver), [[message("msg_held")]], 4))
            await asyncio.wait_for(receiver.arrived.wait(), 20)
            (child,) = set(children(os.getpid())) - others
            os.kill(child, signal.SIGKILL)
            failed = await asyncio.wait_for(on_the_wire, 20)
            assert failed == [[Attempt(False, None, 0, "the sending process stopped before an answer")]]
            receiver.held.set()
            await asyncio.sleep(RESTART_PAUSE_S)  # a child that died is not started again sooner
            again = await process.send(to(receiver), [[message("msg_held")]], 4)
        finally:
            await process.stop()
    assert again[0][0].ok
    await eventually(lambda: child not in children(os.getpid()), "the killed child to be reaped")
    # The held request was answered into a closed connection; the resend went out under the same id.
    assert [r.id for r in receiver.received].count("msg_held") == 2


async def test_a_round_the_child_cannot_send_is_answered_as_failed_not_left_waiting() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    process = SenderProcess()
    not_a_secret = to(receiver)._replace(secret="whsec_!!not base64!!")
    async with receiver.running():
        try:
            refused = await asyncio.wait_for(process.send(not_a_secret, [[message("msg_1")]], 4), 20)
            after = await process.send(to(receiver), [[message("msg_2")]], 4)
        finally:
            await process.stop()
    ((attempt,),) = refused
    assert not attempt.ok and attempt.error is not None and attempt.error.startswith("not sent: ")
    assert after[0][0].ok  # the same child goes on with the next round
    assert receiver.taken_ids() == {"msg_2"}


@pytest.mark.slow  # waits out the round's deadline, for real
async def test_a_child_that_hangs_is_stopped_and_its_round_answered_as_failed() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    process = SenderProcess()
    quick = to(receiver)._replace(connect_timeout=0.5, timeout=0.5)
    others = set(children(os.getpid()))
    async with receiver.running():
        try:
            assert (await process.send(quick, [[message("msg_1")]], 4))[0][0].ok
            (child,) = set(children(os.getpid())) - others
            os.kill(child, signal.SIGSTOP)
            # The address checked, one request and the slack: then the child is taken for hung.
            ceiling = 0.5 + 0.5 + ANSWER_SLACK_S
            hung = await asyncio.wait_for(process.send(quick, [[message("msg_2")]], 4), ceiling + 10)
            await eventually(lambda: not alive(child), "the hung child to be killed")
            await asyncio.sleep(RESTART_PAUSE_S)
            after = await process.send(quick, [[message("msg_3")]], 4)
        finally:
            await process.stop()
    assert hung == [
        [Attempt(False, None, 0, f"the sending process did not answer within {ceiling:g} s; it was stopped")]
    ]
    assert after[0][0].ok
    assert receiver.taken_ids() == {"msg_1", "msg_3"}


async def test_a_round_its_relay_stops_waiting_for_sends_nothing_more() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    receiver.held = asyncio.Event()
    process = SenderProcess()
    chain = [message(f"msg_{n}") for n in range(5)]
    async with receiver.running():
        try:
            round_ = asyncio.create_task(process.send(to(receiver), [chain], 4))
            await asyncio.wait_for(receiver.arrived.wait(), 20)
            round_.cancel()  # as a relay is, when its endpoint is disabled or its lease lost
            with contextlib.suppress(asyncio.CancelledError):
                await round_
            receiver.held.set()
            # The next round's answer comes after the child read the cancellation (one pipe, in order);
            # a chain that went on would have sent its next request on loopback long before the pause ends.
            await process.send(to(receiver), [[message("msg_other")]], 4)
            await asyncio.sleep(0.5)
        finally:
            await process.stop()
    # The request on the wire when the round was cancelled, and the next round's: nothing else.
    assert len(receiver.arrivals) == 2
    assert receiver.taken_ids() == {"msg_0", "msg_other"}


# A service's stand-in, on uvloop as `serve` runs: it listens on an inheritable socket (as uvicorn's
# are), sends one request through a SenderProcess, prints its answer and the socket's inode, and
# waits to be killed (a Ctrl-C ends it quietly).
SERVICE = """
import asyncio, os, socket, sys
import uvloop
from api.outbound.addresses import Reach
from api.outbound.sender_process import Destination, SenderProcess

async def main():
    listening = socket.create_server(("127.0.0.1", 0))
    listening.set_inheritable(True)
    process = SenderProcess()
    to = Destination(sys.argv[1], Reach(loopback=True), 2.0, 10.0, sys.argv[2])
    ((attempt,),) = await process.send(to, [[("msg_1", b"{}")]], 1)
    print(attempt.ok, os.fstat(listening.fileno()).st_ino, flush=True)
    await asyncio.sleep(120)

try:
    uvloop.run(main())
except KeyboardInterrupt:
    pass
"""


@contextlib.asynccontextmanager
async def service(
    receiver: Receiver, cwd: Path | None = None, **options: Any
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int]]:
    """The stand-in service started, its request sent: the process, its sending process's pid, and
    the inode of its listening socket. Killed at the end if it still runs."""
    assert receiver.secret is not None
    started = await asyncio.create_subprocess_exec(
        # -P: the stand-in imports the installed service, not what its working directory holds.
        *(sys.executable, "-P", "-c", SERVICE, receiver.url, receiver.secret),
        stdout=asyncio.subprocess.PIPE,
        cwd=cwd,
        **options,
    )
    try:
        assert started.stdout is not None
        ok, inode = (await asyncio.wait_for(started.stdout.readline(), 30)).split()
        assert ok == b"True"
        (child,) = children(started.pid)
        yield started, child, int(inode)
    finally:
        if started.returncode is None:
            started.kill()
            await started.wait()


async def test_a_service_killed_with_sigkill_leaves_no_sending_process_behind() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    async with receiver.running(), service(receiver) as (started, child, _):
        started.kill()  # the service alone, not its process group
        await started.wait()
    await eventually(lambda: not alive(child), "the sending process to end with its service", 20)


async def test_the_sending_process_holds_none_of_the_services_descriptors() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    async with receiver.running(), service(receiver) as (_, child, inode):
        held = descriptors(child)
    # Were it to outlive the service a moment, a child holding its listening socket would keep the port.
    assert f"socket:[{inode}]" not in held


async def test_the_sending_process_runs_the_services_code_whatever_its_working_directory_holds(
    tmp_path: Path,
) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "__init__.py").write_text("raise ImportError('not the service')\n")
    receiver = Receiver()
    receiver.secret = new_secret()
    async with receiver.running(), service(receiver, cwd=tmp_path):
        pass  # the request was taken: the child imported the service's own package
    assert receiver.taken_ids() == {"msg_1"}


async def test_a_ctrl_c_at_the_terminal_ends_the_sending_process_with_its_service_and_no_traceback() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    # A session of its own stands for the terminal's process group, which a Ctrl-C signals whole.
    options = {"stderr": asyncio.subprocess.PIPE, "start_new_session": True}
    async with receiver.running(), service(receiver, **options) as (started, child, _):
        os.killpg(started.pid, signal.SIGINT)
        await asyncio.wait_for(started.wait(), 30)
        assert started.stderr is not None
        # The child writes to the service's stderr: read to its end, which comes once the child ended.
        output = await asyncio.wait_for(started.stderr.read(), 30)
    await eventually(lambda: not alive(child), "the sending process to end with its service", 20)
    assert b"Traceback" not in output, output.decode()
