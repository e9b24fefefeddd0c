"""A webhook relay's rounds (api/outbound/webhooks.EndpointDeliveries) against a recording store: while
the endpoint is known to have nothing stored, a round neither looks for due deliveries nor for sagas
to hold, and once it stores a failure it does both again, so later events of that saga wait."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

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


STUCK = event(1, "a")  # a saga whose first event failed: its retry is due


class StuckStore(Store):
    """Has the stuck saga's retry due, and answers the endpoint as `now_is` (changed by the test)."""

    now_is = ENDPOINT

    async def endpoint(self, _: str) -> Endpoint:
        return self.now_is

    async def due(self, *_: Any) -> list[list[Delivery]]:
        retry = Delivery(
            "e", 1, STUCK.event_id, STUCK.type, "a", "{}", "PENDING", 1, 500, 1, "answered 500", NOW, NOW, NOW
        )
        return [[retry]]


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


@pytest.mark.parametrize(
    "change",
    [
        replace(ENDPOINT, enabled=False),
        replace(ENDPOINT, secret="whsec_" + "A" * 32),  # rotated
        replace(ENDPOINT, url="https://example.com/new"),
    ],
    ids=["disabled", "rotated", "moved"],
)
async def test_a_retry_on_its_way_stops_once_the_endpoint_is_disabled_rotated_or_moved(
    change: Endpoint,
) -> None:
    started, cancelled = asyncio.Event(), []

    class Holding(SenderProcess):
        """Holds every request it is given (the stuck saga's retry) until cancelled."""

        async def send(
            self, _: Destination, chains: Sequence[Sequence[Message]], __: int
        ) -> list[list[Attempt]]:
            if not chains:
                return []
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(chains[0][0][0])
                raise
            return []

    store = StuckStore()
    wiring = Wiring(store, None, None, None, Holding(), Clock(), DeliveryPolicy(), None)  # type: ignore[arg-type]
    deliveries = EndpointDeliveries("e", wiring)
    await deliveries.deliver([], 0)  # the round ends; the retry beside it stays on the wire
    await asyncio.wait_for(started.wait(), 5)
    assert cancelled == []
    store.now_is = change
    await deliveries.deliver([], 0)
    assert cancelled == [STUCK.event_id]
    await deliveries.close()


async def test_a_success_clears_a_failing_time_noted_after_the_round_read_the_endpoint() -> None:
    answers = {event(1, "a").event_id: False, event(2, "b").event_id: True}
    noted: list[bool] = []

    class Answering(SenderProcess):
        async def send(
            self, _: Destination, chains: Sequence[Sequence[Message]], __: int
        ) -> list[list[Attempt]]:
            return [[Attempt(answers[chain[0][0]], None, 1, None)] for chain in chains]

    class Noting(Store):
        """Answers the endpoint as first read (never failing): what a round read before the send
        beside it noted a failure."""

        async def note_health(self, _: str, succeeded: bool, __: datetime) -> datetime | None:
            noted.append(succeeded)
            return None if succeeded else NOW

    wiring = Wiring(Noting(), None, None, None, Answering(), Clock(), DeliveryPolicy(), None)  # type: ignore[arg-type]
    deliveries = EndpointDeliveries("e", wiring)
    await deliveries.deliver([event(1, "a")], 0)  # fails: the endpoint is failing from now
    await deliveries.deliver([event(2, "b")], 1)  # succeeds, though the endpoint read says not failing
    assert noted == [False, True]
    await deliveries.close()


async def test_a_round_stopped_while_it_stops_the_retry_beside_it_stops() -> None:
    holding, sent = asyncio.Event(), []

    class SlowToCancel(SenderProcess):
        """Holds the stuck saga's retry; cancelled, it takes a moment to end (the child answering)."""

        async def send(
            self, _: Destination, chains: Sequence[Sequence[Message]], __: int
        ) -> list[list[Attempt]]:
            if chains and chains[0][0][0] == STUCK.event_id:
                holding.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    await asyncio.shield(asyncio.sleep(0.2))
            sent.extend(message_id for chain in chains for message_id, _body in chain)
            return [[Attempt(True, 204, 1, None) for _ in chain] for chain in chains]

    store = StuckStore()
    wiring = Wiring(store, None, None, None, SlowToCancel(), Clock(), DeliveryPolicy(), None)  # type: ignore[arg-type]
    deliveries = EndpointDeliveries("e", wiring)
    await deliveries.deliver([], 0)
    await asyncio.wait_for(holding.wait(), 5)
    store.now_is = replace(ENDPOINT, secret="whsec_" + "A" * 32)  # the next round stops the retry
    round_ = asyncio.create_task(deliveries.deliver([event(2, "b")], 1))
    await asyncio.sleep(0.05)  # the round waits for the retry to end
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_
    assert sent == []  # neither the new event nor another retry went out after it was stopped
    await deliveries.close()
