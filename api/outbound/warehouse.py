"""Remote warehouse services: the shipment instruction (出荷指示) and its cancel, sent over HTTP to the
warehouse management system that executes them (the domain's RemoteWarehouses).

A warehouse is remote when the catalog gives it a `serviceUrl`, or when the service is run with
`--warehouse-service-url` (every warehouse without its own). Its commands are POSTed as JSON:

    {"commandId", "type": "CreateShipment" | "CancelShipment", "sagaId", "orderId", "shipmentId",
     "warehouseCode", "picks": [{"sectionCode", "sku", "quantity"}]}

with `Idempotency-Key: <commandId>` and the Standard Webhooks signature headers (api/outbound/
signing.py; `webhook-id` is the command id too). A command keeps its id on every attempt and after a
restart, so the warehouse acts on it once however often it arrives.

What an answer means (README, "Connecting a warehouse"):
- 2xx `{"status": "CREATED", "reference": "…"}`: the shipment exists. For a cancel, any 2xx, or 404
  or 410 with `{"status": "NOT_FOUND"}` (no such shipment there: nothing to cancel). A bare 404 is
  a refusal like any 4xx: it may come from a service that is gone, not from the warehouse.
- 202 to a CreateShipment: accepted; the outcome comes later, by `reportShipmentOutcome`.
- 2xx `{"status": "REJECTED", "reason": "…"}`, or a 4xx other than 408, 409 and 429: refused.
- 5xx, 408, 409 (the same key still being worked on), 429 (honouring Retry-After), a timeout, a
  connection error, an answer over MAX_ANSWER_BYTES (api/outbound/http.py, not read), or a 2xx that
  says neither: transient, tried again within the step's attempts.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from api.outbound.addresses import Reach, reach_problem
from api.outbound.signing import Signer
from api.supervision import LocalChanges, every
from domain.model.problems import MAX_TEXT
from domain.model.saga import Accepted, Outcome, Rejected, Step, Succeeded, Unavailable
from domain.ports import StepCommand

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("ordersaga.warehouse")

COMMAND_TYPES = {Step.CREATE_SHIPMENT: "CreateShipment", Step.CANCEL_SHIPMENT: "CancelShipment"}
# How often the catalog's service URLs are read again: a change made in any process reaches every
# other's next commands within this.
REFRESH_S = 1.0
# 4xx answers that are not a refusal: a request timeout, the same key still being worked on, and
# too many requests.
TRANSIENT_4XX = frozenset({408, 409, 429})
# Answers to a cancel that say the warehouse holds no such shipment, which is what a cancel wants: a
# create whose answer was lost may never have arrived. Only with a body that says so (NOT_FOUND): a
# retired service, or a proxy in front of one, answers 404 too, and the shipment may well exist at the
# warehouse's new service.
GONE = frozenset({404, 410})
# The longest Retry-After honoured; a warehouse asking for more is tried again after this.
MAX_RETRY_AFTER = timedelta(minutes=10)
# The fastest a command is allowed to fail for want of time: below this it is not sent at all.
MIN_TIMEOUT_S = 0.05


@dataclass(slots=True)
class CommandStats:
    """What one warehouse's commands of one type did, in this process since it started: for
    `sagaMetrics` and the console (/metrics has a histogram of its own, fed by a CommandListener)."""

    sent: int = 0
    # By outcome: CREATED (or CANCELLED), ACCEPTED, REJECTED, UNAVAILABLE.
    outcomes: dict[str, int] = field(default_factory=dict)
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    last_seconds: float = 0.0
    last_response: str = ""
    last_at: datetime | None = None


# Told of every command as its answer arrives: (warehouse code, command type, outcome, seconds).
CommandListener = Callable[[str, str, str, float], None]


class WarehouseService:
    """Sends shipment commands to the remote warehouses, and knows which warehouses are remote.

    `default_url`: the service every warehouse without a URL of its own uses; None: those use the
    built-in warehouse. `signer`: signs every command (serve --warehouse-service-secret-file).
    `reach`: the addresses a warehouse's own URL, which an admin sets over the API, may lead to
    (api/outbound/addresses.py); `default_url` is the operator's, and is not held to it."""

    def __init__(
        self,
        read_urls: Callable[[], Awaitable[dict[str, str]]],
        default_url: str | None,
        signer: Signer | None,
        reach: Reach,
    ) -> None:
        self._read_urls = read_urls
        self._default_url = default_url
        self._signer = signer
        self.reach = reach
        self._urls: dict[str, str] = {}
        self._changes = LocalChanges()
        # Two clients: one for the operator's URLs, one for the warehouses' own, which looks names up
        # through a resolver held to `reach` (so that a name cannot lead elsewhere once checked).
        self._http: httpx.AsyncClient | None = None
        self._guarded_http: httpx.AsyncClient | None = None
        self._listeners: list[CommandListener] = []
        # By (warehouse code, command type: CreateShipment or CancelShipment).
        self.stats: dict[tuple[str, str], CommandStats] = {}

    @property
    def signs(self) -> bool:
        """Whether commands are signed: a warehouse may be given a URL only then."""
        return self._signer is not None

    def add_listener(self, listener: CommandListener) -> None:
        """Have `listener` told of every command sent from now on, as its answer (or its failure to
        come) is recorded: the warehouse's code, the command's type, the outcome's name as `stats`
        counts it, and the seconds from sending to the answer."""
        self._listeners.append(listener)

    def url_of(self, warehouse_code: str) -> str | None:
        """See domain.ports.RemoteWarehouses.url_of."""
        return self._urls.get(warehouse_code, self._default_url)

    def learn(self, warehouse_code: str, url: str | None) -> None:
        """A warehouse's URL as this process just committed it: its next commands go there."""
        self._changes.made()
        if url is None:
            self._urls.pop(warehouse_code, None)
        else:
            self._urls[warehouse_code] = url

    async def refresh(self) -> None:
        """Read every warehouse's service URL from the catalog; a read that `learn` overtook is
        dropped (it would send the next commands to the URL the warehouse had before)."""
        urls = await self._changes.unless_overtaken(self._read_urls)
        if urls is not None:
            self._urls = urls

    async def keep_current(self) -> None:
        """Refresh every REFRESH_S until cancelled (a supervised background task); a database busy
        or away keeps the URLs read before (api/supervision.py `every`)."""
        await every(REFRESH_S, self.refresh, "warehouse service URLs")

    async def close(self) -> None:
        clients, self._http, self._guarded_http = (self._http, self._guarded_http), None, None
        async with contextlib.AsyncExitStack() as closing:  # each closed, whatever another raises
            for http in clients:
                if http is not None:
                    closing.push_async_callback(http.aclose)

    def _client(self, guarded: bool) -> httpx.AsyncClient:
        from api.outbound.http import client

        if not guarded:
            if self._http is None:
                self._http = client()
            return self._http
        if self._guarded_http is None:
            from api.outbound.resolver import GuardedResolver

            self._guarded_http = client(resolver=GuardedResolver(self.reach))
        return self._guarded_http

    async def send(
        self, step: Step, command: StepCommand, service_url: str | None, timeout_s: float
    ) -> Outcome:
        """See domain.ports.RemoteWarehouses.send."""
        import httpx  # lazily, with the client below: aiohttp and httpx only once a warehouse is remote

        from api.outbound.http import AnswerTooLarge, post

        warehouse = command.warehouse_code or ""
        url = service_url or self.url_of(warehouse)
        if url is None:  # a shipment routed before routes were journalled, its URL since removed
            return Unavailable(f"warehouse {warehouse} has no service URL any more")
        if timeout_s < MIN_TIMEOUT_S:
            return Unavailable("no time left before the step's deadline")
        # A warehouse's own URL, which an admin sets over the API, is held to `reach`, also one stored
        # before that rule; one the operator named (--warehouse-service-url, now or when a shipment in
        # flight was routed: its retries and its cancel go there still) is not.
        own = url in self._urls.values()
        if own and (refusal := await reach_problem(url, self.reach)) is not None:
            refused = Unavailable(f"not sent: {refusal} (serve --allow-private-warehouse-urls to allow it)")
            self._record(warehouse, step, refused, "not sent", 0.0)
            return refused
        body = command_body(step, command)
        headers = {"idempotency-key": command.command_id}
        if self._signer is not None:
            headers.update(self._signer.headers(command.command_id, body))
        started = time.monotonic()
        outcome: Outcome
        try:
            response = await post(self._client(guarded=own), url, body, headers, timeout_s)
        except TimeoutError:
            outcome, said = Unavailable(f"no answer within {timeout_s:.3g}s"), "timeout"
        except httpx.HTTPError as error:
            outcome, said = Unavailable(f"{type(error).__name__}: {error}"[:MAX_TEXT]), type(error).__name__
        except AnswerTooLarge as error:
            outcome, said = Unavailable(str(error)), "too large"
        else:
            outcome, said = answer(step, response), f"HTTP {response.status_code}"
        self._record(warehouse, step, outcome, said, time.monotonic() - started)
        return outcome

    def _record(self, warehouse: str, step: Step, outcome: Outcome, said: str, seconds: float) -> None:
        command_type = COMMAND_TYPES[step]
        stats = self.stats.setdefault((warehouse, command_type), CommandStats())
        kind = outcome_name(step, outcome)
        stats.sent += 1
        stats.outcomes[kind] = stats.outcomes.get(kind, 0) + 1
        stats.total_seconds += seconds
        stats.max_seconds = max(stats.max_seconds, seconds)
        stats.last_seconds = seconds
        stats.last_response = f"{said}: {kind}"
        stats.last_at = datetime.now(UTC)
        for listener in self._listeners:
            listener(warehouse, command_type, kind, seconds)
        if isinstance(outcome, Unavailable):
            log.info("warehouse %s: %s %s: %s", warehouse, command_type, said, outcome.reason)


def command_body(step: Step, command: StepCommand) -> bytes:
    """The command as the warehouse receives it (the module's docstring shows its shape)."""
    return json.dumps(
        {
            "commandId": command.command_id,
            "type": COMMAND_TYPES[step],
            "sagaId": command.saga_id,
            "orderId": command.order_id,
            "shipmentId": command.shipment_id,
            "warehouseCode": command.warehouse_code,
            "picks": [
                {"sectionCode": p.section_code, "sku": p.sku, "quantity": p.quantity} for p in command.picks
            ],
        },
        separators=(",", ":"),
    ).encode()


def answer(step: Step, response: httpx.Response) -> Outcome:
    """What the warehouse's HTTP answer to a command means (the module's docstring lists the rules)."""
    code = response.status_code
    if code == 202 and step is Step.CREATE_SHIPMENT:
        return Accepted()
    if step is Step.CANCEL_SHIPMENT and (
        200 <= code < 300 or (code in GONE and _json(response).get("status") == "NOT_FOUND")
    ):
        return Succeeded()
    if 200 <= code < 300:
        said = _json(response)
        if said.get("status") == "CREATED":
            reference = said.get("reference")
            return Succeeded(reference=str(reference)[:MAX_TEXT] if reference is not None else None)
        if said.get("status") == "REJECTED":
            return Rejected(str(said.get("reason") or "refused by the warehouse")[:MAX_TEXT])
        return Unavailable(f"HTTP {code} without a status CREATED or REJECTED")
    if code in TRANSIENT_4XX or code >= 500:
        return Unavailable(f"HTTP {code}", retry_after(response.headers, datetime.now(UTC)))
    if 400 <= code < 500:
        return Rejected(f"HTTP {code}: {response.text[:160]}".strip()[:MAX_TEXT])
    return Unavailable(f"HTTP {code}")  # a redirect (never followed) or an informational answer


def outcome_name(step: Step, outcome: Outcome) -> str:
    match outcome:
        case Succeeded():
            return "CREATED" if step is Step.CREATE_SHIPMENT else "CANCELLED"
        case Accepted():
            return "ACCEPTED"
        case Rejected():
            return "REJECTED"
        case Unavailable():
            return "UNAVAILABLE"


def retry_after(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """The wait a Retry-After header asks for (RFC 9110 10.2.3: seconds, or an HTTP date), at most
    MAX_RETRY_AFTER; None when absent or unreadable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        # More digits than the cap has are the cap, and are not read: Python reads at most 4,300.
        most, digits = int(MAX_RETRY_AFTER.total_seconds()), value.lstrip("0") or "0"
        return timedelta(seconds=most if len(digits) > len(str(most)) else min(int(digits), most))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(when - now, timedelta(0)), MAX_RETRY_AFTER)


def _json(response: httpx.Response) -> dict[str, object]:
    """The answer's JSON object; {} for anything else, JSON nested past the decoder's recursion limit
    or holding a number of more digits than Python reads included."""
    try:
        said = response.json()
    except (ValueError, RecursionError):
        return {}
    return said if isinstance(said, dict) else {}
