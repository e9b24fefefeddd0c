"""NATS JetStream for the event stream's tests: the machine's server at 127.0.0.1:4222 (a stream and
subject prefix of each test's own, deleted at its end), private servers a test stops and starts, and
reading a stream back to check it against the journal.

Tests that need NATS skip, saying why, when it is absent, unless ORDERSAGA_REQUIRE_NATS is set (CI
sets it), then they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError

from api.settings import StreamSettings
from persistence.read.event_log import LoggedEvent
from tests.polling import eventually
from tests.ports import free_port

NATS_URL = "nats://127.0.0.1:4222"
NATS_SERVER = Path("/usr/sbin/nats-server")
REQUIRE_NATS_ENV = "ORDERSAGA_REQUIRE_NATS"


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _absent(message: str) -> None:
    if os.environ.get(REQUIRE_NATS_ENV):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def nats_url() -> str:
    if not _answers("127.0.0.1", 4222):
        _absent(f"the event stream's tests need a NATS server with JetStream at {NATS_URL}")
    return NATS_URL


@pytest.fixture
def nats_server_binary() -> Path:
    if not os.access(NATS_SERVER, os.X_OK):
        _absent(f"the event stream's outage tests start their own NATS server, {NATS_SERVER}")
    return NATS_SERVER


def unique_stream(url: str) -> StreamSettings:
    """A stream name and subject prefix no other test uses, on `url`."""
    tag = uuid.uuid4().hex[:12]
    return StreamSettings(url=url, stream=f"TEST_{tag}", subject_prefix=f"test{tag}")


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[StreamSettings]:
    """A stream of the test's own on the machine's server (not made yet: the service makes it),
    deleted at the end."""
    settings = unique_stream(nats_url)
    try:
        yield settings
    finally:
        await delete_stream(settings)


async def delete_stream(settings: StreamSettings) -> None:
    connection = await nats.connect(settings.url, allow_reconnect=False)
    try:
        with contextlib.suppress(NotFoundError):
            await connection.jetstream().delete_stream(settings.stream)
    finally:
        await connection.close()


class NatsServer:
    """A nats-server of a test's own on a loopback port, storing in `store`; `stop` and `start` it
    again to stage an outage (the stream survives in the store, as a restarted server's does)."""

    def __init__(self, binary: Path, store: Path) -> None:
        self._binary, self._store = binary, store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            str(self._binary),
            *("-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self._store)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await eventually(lambda: _answers("127.0.0.1", self.port), "the NATS server to listen")

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


@contextlib.asynccontextmanager
async def nats_server(binary: Path, store: Path) -> AsyncIterator[NatsServer]:
    server = NatsServer(binary, store)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(store, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Stored:
    """One message of the stream, in the stream's order."""

    subject: str
    msg_id: str
    body: dict[str, Any]
    raw: bytes


async def stored(settings: StreamSettings) -> list[Stored]:
    """Every message the stream holds, in the stream's order (none if it does not exist)."""
    connection = await nats.connect(settings.url, allow_reconnect=False)
    try:
        js = connection.jetstream()
        try:
            state = (await js.stream_info(settings.stream)).state
        except NotFoundError:
            return []
        messages: list[Stored] = []
        if not state.messages:
            return messages
        for sequence in range(state.first_seq, state.last_seq + 1):
            message = await js.get_msg(settings.stream, sequence)
            assert message.data is not None and message.headers is not None
            body = json.loads(message.data)
            messages.append(Stored(message.subject, message.headers["Nats-Msg-Id"], body, message.data))
        return messages
    finally:
        await connection.close()


async def message_count(settings: StreamSettings) -> int:
    connection = await nats.connect(settings.url, allow_reconnect=False)
    try:
        try:
            return int((await connection.jetstream().stream_info(settings.stream)).state.messages)
        except NotFoundError:
            return 0
    finally:
        await connection.close()


async def wait_for_stream(settings: StreamSettings, count: int, seconds: float = 20) -> None:
    """Until the stream holds `count` messages; fails after `seconds`, saying how many it held."""
    held = 0
    for _ in range(int(seconds / 0.05)):
        held = await message_count(settings)
        if held >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the stream held {held} of {count} messages after {seconds:g}s")


def assert_each_event_once_in_order(messages: list[Stored], events: list[LoggedEvent], prefix: str) -> None:
    """The stream holds every journal event exactly once, as the relay sends it (subject, id, body),
    and each saga's events in journal order."""
    ids = [m.msg_id for m in messages]
    assert len(ids) == len(set(ids)), "an event is in the stream twice"
    by_id = {event.event_id: event for event in events}
    assert set(ids) == set(by_id), "the stream and the journal hold different events"
    for message in messages:
        event = by_id[message.msg_id]
        assert message.subject == f"{prefix}.sagas.{event.saga_id}"
        assert message.raw == event.payload()
    sequences: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        sequences[message.body["data"]["sagaId"]].append(message.body["data"]["sequence"])
    for saga_id, in_stream in sequences.items():
        assert in_stream == list(range(1, len(in_stream) + 1)), f"saga {saga_id} out of order: {in_stream}"
