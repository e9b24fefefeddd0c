"""A webhook receiver on loopback, as a customer would write one: it verifies every request with the
`standardwebhooks` package and records what it took, for tests to check delivery against the journal.

It can be told to answer with another status (`answer`), to hold requests until released (`held`; one
saga's alone with `held_saga`), and be stopped and started again on the same port (`down`), the way a
receiver goes away and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.api.server import serve_app
from tests.polling import eventually
from tests.ports import free_port


@contextlib.contextmanager
def unconnectable() -> Iterator[str]:
    """A loopback URL whose connections neither succeed nor fail: its listener never accepts, and its
    backlog is full, so the system drops every further SYN (Linux) and a connect waits, its SYNs
    resent, until the client gives up."""
    with contextlib.ExitStack() as held:
        listener = held.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        host, port = listener.getsockname()
        for _ in range(8):  # listen(0) queues one connection; the next connect that waits proves it full
            filler = held.enter_context(socket.socket())
            filler.settimeout(0.2)
            try:
                filler.connect((host, port))
            except TimeoutError:
                break
        else:
            raise AssertionError("the listener's backlog never filled")
        yield f"http://{host}:{port}/hook"


@dataclass(frozen=True, slots=True)
class Received:
    """One request that passed verification: its webhook-id, its body, and the status answered."""

    id: str
    payload: dict[str, Any]
    status: int

    @property
    def saga_id(self) -> str:
        return str(self.payload["data"]["sagaId"])

    @property
    def sequence(self) -> int:
        return int(self.payload["data"]["sequence"])


class Receiver:
    def __init__(self) -> None:
        self.secret: str | None = None
        self.answer = 200  # the status each verified request gets
        self.received: list[Received] = []  # every verified request, in arrival order
        self.refused: list[str] = []  # why each request that failed verification did
        self.arrivals: list[bytes] = []  # every request's body as it arrived, before it was answered
        self.arrived = asyncio.Event()  # set by each request as it arrives
        self.held: asyncio.Event | None = None  # when set, requests wait for it before they answer
        self.held_saga: str | None = None  # when set, only that saga's requests are held
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        self.arrivals.append(body)
        self.arrived.set()
        if self.held is not None and (
            self.held_saga is None or self.held_saga == json.loads(body)["data"]["sagaId"]
        ):
            await self.held.wait()
        try:
            assert self.secret is not None, "a request before the secret was known"
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except (WebhookVerificationError, AssertionError) as refusal:
            self.refused.append(str(refusal))
            return Response(status_code=400)
        self.received.append(Received(request.headers["webhook-id"], payload, self.answer))
        return Response(status_code=self.answer)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with serve_app(self.app, port=self.port):
            yield

    @property
    def taken(self) -> list[Received]:
        """The verified requests answered 2xx, in arrival order."""
        return [r for r in self.received if 200 <= r.status < 300]

    def taken_ids(self) -> set[str]:
        return {r.id for r in self.taken}

    async def wait_for(self, ids: set[str], seconds: float = 20) -> None:
        await eventually(lambda: ids <= self.taken_ids(), f"{len(ids)} events to be taken", seconds)

    def check_order(self) -> None:
        """Each saga's events were taken in journal order: none before every earlier one of its saga
        had been taken (a repeat of one already taken is allowed: delivery is at least once)."""
        taken: dict[str, set[int]] = defaultdict(set)
        for request in self.taken:
            earlier = set(range(1, request.sequence))
            missing = earlier - taken[request.saga_id]
            assert not missing, f"{request.id} taken before sequences {sorted(missing)} of its saga"
            taken[request.saga_id].add(request.sequence)
        assert self.refused == [], self.refused
