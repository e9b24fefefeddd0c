"""A webhook relay's rounds (api/outbound/webhooks.EndpointDeliveries) against a recording store: while
the endpoint is known to have nothing stored, a round neither looks for due deliveries nor for sagas
to hold, and once it stores a failure it does both again, so later events of that saga wait."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from api.outbound.sender_process import Attempt, Destination, Message, SenderProcess
from api.outbound.webhooks import DeliveryPolicy, EndpointDeliveries, Wiring
from persistence.read.event_log import LoggedEvent
from persistence.webhooks import Delivery, Endpoint

NOW = datetime(2026, 12, 5, tzinfo=UTC)
ENDPOINT = Endpoint(
    "e",
    "https://example.com/hook",
    None,
    None,
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    True,
    None,
    None,
    NOW,
)


def event(position: int, saga: str) -> LoggedEvent:
    return LoggedEvent(
        position, saga, "o", "c", position, "StepStarted", "STOCK_RESERVING", None, 1, None, NOW
    )


class Store:
    """Records which reads a round made; holds what was stored."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.stored: list[Delivery] = []

    async def endpoint(self, _: str) -> Endpoint:
        return ENDPOINT

    async def due(self, *_: Any) -> list[list[Delivery]]:
        self.calls.append("due")
        return []

    async def unfinished_sagas(self, _: str, saga_ids: Iterable[str]) -> set[str]:
        self.calls.append("unfinished")
        return {d.saga_id for d in self.stored} & set(saga_ids)

    async def undelivered(self, _: str) -> bool:
        self.calls.append("undelivered")
        return bool(self.stored)

    async def store(self, deliveries: Sequence[Delivery]) -> None:
        self.stored.extend(deliveries)

    async def record(self, *_: Any) -> None:
        pass

    async def note_health(self, *_: Any) -> None:
        return None

    async def prune(self, *_: Any) -> int:
        return 0


class Clock:
    def now(self) -> datetime:
        return NOW


async def test_rounds_skip_the_stored_deliveries_reads_until_one_is_stored() -> None:
    refused: set[str] = set()
    sent: list[str] = []

    class Sending(SenderProcess):
        """Takes every request but those `refused` (answered 500), as the child would, in-process."""

        async def send(
            self, _: Destination, chains: Sequence[Sequence[Message]], __: int
        ) -> list[list[Attempt]]:
            answers = []
            for chain in chains:
                attempts = []
                for event_id, _body in chain:
                    sent.append(event_id)
                    ok = event_id not in refused
                    attempts.append(Attempt(ok, 204 if ok else 500, 1, None if ok else "answered 500"))
                    if not ok:
                        break
                answers.append(attempts)
            return answers

    store = Store()
    wiring = Wiring(store, None, None, None, Sending(), Clock(), DeliveryPolicy(), None)  # type: ignore[arg-type]
    deliveries = EndpointDeliveries("e", wiring)

    async def reads_of_a_round(events: list[LoggedEvent], since: int) -> list[str]:
        """The store's reads of one round, and of the send of due deliveries it started beside."""
        store.calls.clear()
        assert await deliveries.deliver(events, since) == events[-1].position
        for _ in range(10):  # the due deliveries' send, beside the round, runs to its end
            await asyncio.sleep(0)
        return sorted(store.calls)

    # The first round knows nothing yet.
    assert await reads_of_a_round([event(1, "a")], 0) == ["due", "undelivered", "unfinished"]

    refused.add(event(2, "a").event_id)
    # Known to have nothing stored: neither read.
    assert await reads_of_a_round([event(2, "a"), event(3, "b")], 1) == []
    assert [d.position for d in store.stored] == [2]

    # A failure was stored: saga a's next event waits.
    assert await reads_of_a_round([event(4, "a"), event(5, "b")], 3) == ["due", "unfinished"]
    assert [d.position for d in store.stored] == [2, 4]
    assert event(4, "a").event_id not in sent
    await deliveries.close()
