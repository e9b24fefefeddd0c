"""The process webhook POSTs go out from (api/outbound/sender_process.py), as real processes against a
receiver on loopback that verifies every request with the `standardwebhooks` package: each chain is
sent in order, signed, until a request is not taken; an address the reach refuses is not sent to; a
child killed while a request is on the wire fails its round and the next round starts another; and a
service killed with SIGKILL leaves no sending process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from api.outbound.addresses import Reach
from api.outbound.sender_process import RESTART_PAUSE_S, Attempt, Destination, Message, SenderProcess
from api.outbound.signing import new_secret
from tests.polling import eventually
from tests.receiver import Receiver

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


# A service's stand-in: sends one request through a SenderProcess, says so, and waits to be killed.
SERVICE = """
import asyncio, sys
from api.outbound.addresses import Reach
from api.outbound.sender_process import Destination, SenderProcess

async def main():
    process = SenderProcess()
    to = Destination(sys.argv[1], Reach(loopback=True), 2.0, 10.0, sys.argv[2])
    await process.send(to, [[("msg_1", b"{}")]], 1)
    print("sent", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_a_service_killed_with_sigkill_leaves_no_sending_process_behind() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    async with receiver.running():
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVICE, receiver.url, receiver.secret, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert service.stdout is not None
            assert await asyncio.wait_for(service.stdout.readline(), 30) == b"sent\n"
            (child,) = children(service.pid)
        finally:
            service.kill()  # the service alone, not its process group
            await service.wait()
    await eventually(lambda: not alive(child), "the sending process to end with its service", 20)


async def test_a_ctrl_c_at_the_terminal_ends_the_sending_process_with_its_service_and_no_traceback() -> None:
    receiver = Receiver()
    receiver.secret = new_secret()
    async with receiver.running():
        # A session of its own stands for the terminal's process group, which a Ctrl-C signals whole.
        service = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVICE.replace(
                "asyncio.run(main())", "try:\n    asyncio.run(main())\nexcept KeyboardInterrupt:\n    pass"
            ),
            receiver.url,
            receiver.secret,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert service.stdout is not None and service.stderr is not None
        assert await asyncio.wait_for(service.stdout.readline(), 30) == b"sent\n"
        (child,) = children(service.pid)
        os.killpg(service.pid, signal.SIGINT)
        await asyncio.wait_for(service.wait(), 30)
        # The child writes to the service's stderr: read to its end, which comes once the child ended.
        output = await asyncio.wait_for(service.stderr.read(), 30)
    await eventually(lambda: not alive(child), "the sending process to end with its service", 20)
    assert b"Traceback" not in output, output.decode()
