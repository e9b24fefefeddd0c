"""The event stream: every journal event published to a NATS JetStream stream, exactly once and, per
saga, in journal order (`serve --nats-url`; docs/decisions/0021-event-stream.md says why it works).

The relay (driven by the relays' loop, api/outbound/relaying.py, as each webhook endpoint's is)
reads the journal past its stored position (persistence/read/event_log.py) and publishes
each event on `<prefix>.sagas.<sagaId>`, its body `LoggedEvent.payload()` and its `Nats-Msg-Id` the
event's stable id. It stores a new position (persistence/fleet/relays.py) only once JetStream has
acknowledged every event up to it, so an event is published at least once; a publish repeated after a
crash or a takeover comes within the stream's duplicate window, which drops it, so each event is
stored once.

Events go out in waves: a wave holds at most one event per saga and is published as one pipelined
batch, and the next wave goes out only once JetStream acknowledged all of this one. A saga's next
event is therefore never sent before its previous one is stored, whatever fails, is retried or was
still in flight on a dead connection: per saga, the stream holds the journal's order.

With several processes over PostgreSQL one relay publishes, under the relay's lease; the others stand
by and take over once the lease of a dead one expired. When NATS is unreachable (or the stream will
not take the events), events wait in the journal, the relay reconnects with growing pauses, and
`status` says it is behind; the service meanwhile serves as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from api.live.hub import TransitionHub
from api.outbound.relaying import PartlyDelivered, RelayDriver, RelayState
from api.settings import StreamSettings
from persistence.fleet.relays import Relays
from persistence.read.event_log import LoggedEvent, head
from persistence.read.reader import ReadEngine

log = logging.getLogger("ordersaga.stream")

# Events read from the journal at a time; a window is published in waves, then its position stored.
WINDOW = 1000
# How long JetStream may take to acknowledge a wave, and a connection to open.
ACK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


class StreamRefused(Exception):
    """The stream exists but cannot take the relay's events (its subjects do not cover them)."""


def subject_of(prefix: str, event: LoggedEvent) -> str:
    """The subject a saga's events are published on: `<prefix>.sagas.<sagaId>`."""
    return f"{prefix}.sagas.{event.saga_id}"


def covers(pattern: str, subject: str) -> bool:
    """Whether the NATS subject filter `pattern` matches every subject that `subject` does (both may
    hold the wildcards `*`, one token, and a final `>`, one or more tokens), by NATS's rules."""
    wanted = subject.split(".")
    for index, token in enumerate(pattern.split(".")):
        if token == ">":
            return index < len(wanted)
        if index >= len(wanted) or wanted[index] == ">":
            return False
        if token != "*" and token != wanted[index]:
            return False
    return len(pattern.split(".")) == len(wanted)


def without_credentials(url: str) -> str:
    """`url` as logs may show it: a user and password in it (nats://user:secret@host) left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def waves(events: Sequence[LoggedEvent]) -> list[list[LoggedEvent]]:
    """`events` (ascending positions) split into waves: each saga has at most one event per wave, and
    its n-th event here is in the n-th wave, so publishing wave after wave keeps each saga's order."""
    split: list[list[LoggedEvent]] = []
    seen: Counter[str] = Counter()
    for event in events:
        rank = seen[event.saga_id]
        seen[event.saga_id] += 1
        if rank == len(split):
            split.append([])
        split[rank].append(event)
    return split


def acknowledged_through(events: Sequence[LoggedEvent], acknowledged: set[int], since: int) -> int:
    """The last position p such that every event of `events` (ascending) up to p is in `acknowledged`;
    `since` if the first is not."""
    reached = since
    for event in events:
        if event.position not in acknowledged:
            break
        reached = event.position
    return reached


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What /readyz shows of a relay: its state and, while it is behind, how many events wait."""

    name: str
    state: RelayState
    waiting: int | None = None


class StreamRelay:
    """Publishes the journal to the JetStream stream `settings` names, as described above, driven by
    the relays' loop (api/outbound/relaying.py). `run` publishes until cancelled; it raises nothing
    else, since every failure is a reason to wait and try again. `poll_s`: how often it looks for
    events no commit notice announced and, standing by, tries to take the lease; `lease_ttl`: how
    long the lease lasts, with several processes (None: one process, which always holds it)."""

    def __init__(
        self,
        settings: StreamSettings,
        reads: ReadEngine,
        relays: Relays,
        hub: TransitionHub,
        poll_s: float,
        *,
        instance: str,
        lease_ttl: timedelta | None,
    ) -> None:
        self.settings = settings
        self.name = f"stream:{settings.stream}"
        self._reads = reads
        self._driver = RelayDriver(
            self.name,
            _Publisher(settings, instance, self.name),
            relays=relays,
            reads=reads,
            hub=hub,
            batch=WINDOW,
            poll_s=poll_s,
            lease_ttl=lease_ttl,
            opens_row=True,
        )

    @property
    def state(self) -> RelayState:
        return self._driver.state

    @property
    def position(self) -> int:
        """The last position this process stored: every event up to it is in the stream."""
        return self._driver.position

    async def status(self) -> RelayStatus:
        """The relay's state; while behind, the events waiting for it (this reads the journal's head,
        so it raises what the database raises when it does not answer)."""
        if self.state is not RelayState.BEHIND:
            return RelayStatus(self.name, self.state)
        return RelayStatus(self.name, self.state, max(0, await head(self._reads) - self.position))

    async def run(self) -> None:
        """Publish until cancelled; nothing else is raised (a failure makes the relay behind)."""
        await self._driver.run()


class _Publisher:
    """The stream relay's sink: one NATS connection, opened when a round needs it."""

    def __init__(self, settings: StreamSettings, instance: str, name: str) -> None:
        self.settings, self._instance, self.name = settings, instance, name
        self._nats: NATS | None = None
        self._js: JetStreamContext | None = None

    async def deliver(self, events: Sequence[LoggedEvent], since: int) -> int:
        """Publish `events` wave by wave; raises PartlyDelivered, from the wave's error, when a wave
        fails after earlier ones were acknowledged."""
        js = await self._jetstream()  # every round: a relay that cannot reach NATS is behind
        acknowledged: set[int] = set()
        try:
            for wave in waves(events):
                pending = [await self._send(js, event) for event in wave]
                async with asyncio.timeout(ACK_TIMEOUT_S):
                    for event, ack in zip(wave, pending, strict=True):
                        await ack
                        acknowledged.add(event.position)
        except Exception as error:
            raise PartlyDelivered(acknowledged_through(events, acknowledged, since)) from error
        return events[-1].position if events else since

    async def _send(self, js: JetStreamContext, event: LoggedEvent) -> Awaitable[PubAck]:
        return await js.publish_async(
            subject_of(self.settings.subject_prefix, event),
            event.payload(),
            stream=self.settings.stream,  # refused if another stream would store it
            headers={"Nats-Msg-Id": event.event_id},
        )

    async def _jetstream(self) -> JetStreamContext:
        """This relay's JetStream context, connecting (and creating the stream if missing) first when
        there is no open connection. Raises StreamRefused, and what nats-py raises."""
        if self._nats is not None and self._nats.is_connected and self._js is not None:
            return self._js
        await self.close()
        # No reconnecting inside nats-py: a connection that breaks is closed, and the next round
        # opens a new one after the relay's own pause. Nothing sent on a dead connection is resent
        # later behind the relay's back. Connecting gives up at once (nats-py would otherwise try
        # each server for minutes before it raises, and the relay would not say it is behind).
        self._nats = await nats.connect(
            self.settings.url,
            name=f"ordersaga {self._instance}",
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=int(CONNECT_TIMEOUT_S),
            error_cb=self._connection_error,
        )
        self._js = self._nats.jetstream(timeout=ACK_TIMEOUT_S)
        await self._ensure_stream(self._js)
        log.info("stream relay %s: connected to %s", self.name, without_credentials(self.settings.url))
        return self._js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        wanted = f"{self.settings.subject_prefix}.sagas.*"
        try:
            config = (await js.stream_info(self.settings.stream)).config
        except NotFoundError:
            config = StreamConfig(
                name=self.settings.stream,
                subjects=[f"{self.settings.subject_prefix}.>"],
                storage=StorageType.FILE,
                duplicate_window=self.settings.duplicate_window.total_seconds(),
                description="ordersaga's journal events, one subject per saga",
            )
            # Two processes making it at once both succeed, as their configurations are the same; had
            # they differed, the one refused would find the stream made in its next round.
            await js.add_stream(config)
            log.info("stream relay %s: created the stream, subjects %s", self.name, config.subjects)
            return
        if not any(covers(pattern, wanted) for pattern in config.subjects or ()):
            raise StreamRefused(
                f"stream {self.settings.stream} exists with subjects {config.subjects}, which do not "
                f"cover {wanted}: add {self.settings.subject_prefix}.> to its subjects"
            )
        if config.duplicate_window < self.settings.duplicate_window.total_seconds():
            log.warning(
                "stream relay %s: the existing stream's duplicate window is %gs, shorter than the %gs "
                "configured: a publish repeated after that long is stored twice",
                self.name,
                config.duplicate_window,
                self.settings.duplicate_window.total_seconds(),
            )

    async def _connection_error(self, error: Exception) -> None:
        log.debug("stream relay %s: NATS connection: %s", self.name, error)

    async def close(self) -> None:
        """Close the NATS connection, if open; the next round opens a new one."""
        connection, self._nats, self._js = self._nats, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()
