"""A remote warehouse service on loopback, as a warehouse would write one: it verifies every command
with the `standardwebhooks` package, records it, and answers as the test tells it, per warehouse:
created (with a reference), accepted for later (202), refused, an HTTP error (with Retry-After), a
body that goes on for megabytes, or silence until the sender gives up; and to a cancel, cancelled or
an HTTP status. It can hold every answer until released, to show that commands to several
warehouses are all on the wire before any is answered.

Like a real warehouse it acts on a command once: a command it decided on before (created, accepted
or refused) is answered the same again, unless the test scripts another answer for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from api.outbound.signing import new_secret
from tests.api.server import serve_app
from tests.polling import eventually
from tests.ports import free_port

CREATED = ("CREATED",)
ACCEPTED = ("ACCEPTED",)
SILENT = ("SILENT",)


def rejected(reason: str) -> tuple[str, str]:
    return ("REJECTED", reason)


def failing(status: int, retry_after: str | None = None) -> tuple[str, int, str | None]:
    return ("HTTP", status, retry_after)


def compressed(megabytes: int) -> tuple[str, int]:
    """A 200 whose body is `megabytes` MiB of zeros, gzipped to a few dozen KiB, whatever the sender
    asked for."""
    return ("COMPRESSED", megabytes)


def endless(megabytes: int) -> tuple[str, int]:
    """A 200 whose body goes on for `megabytes` MiB, sent a chunk at a time."""
    return ("ENDLESS", megabytes)


# To a cancel: 404, saying the warehouse holds no such shipment.
NOT_FOUND = ("NOT_FOUND",)


@dataclass(frozen=True, slots=True)
class Command:
    """One verified command as it arrived: its headers' idempotency key and its JSON body."""

    idempotency_key: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.body["commandId"])

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def warehouse(self) -> str:
        return str(self.body["warehouseCode"])


@dataclass
class WarehouseStub:
    secret: str = field(default_factory=new_secret)
    # Per warehouse code, the answers to its next CreateShipment commands, in turn; once used up, what
    # it decided for that command before (CREATED for a new one).
    script: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    # Per warehouse code, the answers to its next CancelShipment commands (failing(...) or NOT_FOUND),
    # in turn; once used up, CANCELLED.
    cancel_script: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)  # verified, in arrival order
    refused: list[str] = field(default_factory=list)  # why each unverifiable request was refused
    held: asyncio.Event | None = None  # while unset, every answer waits
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._answered: dict[str, tuple[Any, ...]] = {}
        self._closing = asyncio.Event()
        self.app = Starlette(routes=[Route("/commands", self._command, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/commands"

    def of_type(self, kind: str, warehouse: str | None = None) -> list[Command]:
        return [c for c in self.commands if c.type == kind and warehouse in (None, c.warehouse)]

    async def wait_for(
        self, kind: str, count: int, warehouse: str | None = None, seconds: float = 15
    ) -> None:
        await eventually(
            lambda: len(self.of_type(kind, warehouse)) >= count, f"{count} {kind} commands", seconds
        )

    async def _command(self, request: Request) -> Response:
        body = await request.body()
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as refusal:
            self.refused.append(str(refusal))
            return Response(status_code=401)
        command = Command(request.headers["idempotency-key"], json.loads(body))
        self.commands.append(command)
        if self.held is not None:
            await self.held.wait()
        if command.type == "CancelShipment":
            cancels = self.cancel_script.get(command.warehouse, [])
            if not cancels:
                return JSONResponse({"status": "CANCELLED"})
            match cancels.pop(0):
                case ("NOT_FOUND",):
                    return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
                case ("HTTP", status, _):
                    return Response(status_code=status)
                case other:
                    raise AssertionError(f"no such answer to a cancel {other}")
        queue = self.script.get(command.warehouse, [])
        answer = queue.pop(0) if queue else self._answered.get(command.id, CREATED)
        if answer[0] in ("CREATED", "ACCEPTED", "REJECTED"):  # what it decided, not a failure to answer
            self._answered[command.id] = answer
        match answer:
            case ("CREATED",):
                return JSONResponse({"status": "CREATED", "reference": f"WMS-{command.warehouse}"})
            case ("ACCEPTED",):
                return Response(status_code=202)
            case ("REJECTED", reason):
                return JSONResponse({"status": "REJECTED", "reason": reason})
            case ("HTTP", status, retry_after):
                headers = {} if retry_after is None else {"retry-after": retry_after}
                return Response(status_code=status, headers=headers)
            case ("SILENT",):
                await self._closing.wait()
                return Response(status_code=503)
            case ("COMPRESSED", megabytes):
                body = gzip.compress(bytes(megabytes * 2**20))
                return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})
            case ("ENDLESS", megabytes):
                chunks = (b"x" * 2**20 for _ in range(megabytes))
                return StreamingResponse(chunks, media_type="application/json")
        raise AssertionError(f"no such answer {answer}")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with serve_app(self.app, port=self.port):
            try:
                yield
            finally:
                self._closing.set()
                if self.held is not None:
                    self.held.set()
