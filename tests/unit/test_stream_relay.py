"""The event stream's pure parts: waves that keep each saga's order, how far a failed window got, and
whether an existing stream's subjects take the relay's events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.outbound.stream import acknowledged_through, covers, subject_of, waves, without_credentials
from persistence.read.event_log import LoggedEvent


def event(position: int, saga_id: str, sequence: int) -> LoggedEvent:
    return LoggedEvent(
        position,
        saga_id,
        f"order-{saga_id}",
        "c",
        sequence,
        "StepStarted",
        "RUNNING",
        None,
        None,
        None,
        datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_a_wave_holds_one_event_per_saga_and_each_saga_keeps_its_order_across_waves() -> None:
    events = [event(1, "a", 1), event(2, "a", 2), event(3, "b", 1), event(4, "a", 3), event(5, "b", 2)]
    split = waves(events)
    assert [[(e.saga_id, e.sequence) for e in wave] for wave in split] == [
        [("a", 1), ("b", 1)],
        [("a", 2), ("b", 2)],
        [("a", 3)],
    ]
    assert waves([]) == []


def test_sagas_of_one_event_each_go_out_in_one_wave() -> None:
    events = [event(n, f"saga-{n}", 1) for n in range(1, 101)]
    assert waves(events) == [events]


def test_a_failed_window_stores_the_positions_acknowledged_without_a_gap() -> None:
    events = [event(n, "a", n) for n in (5, 6, 7, 8)]
    assert acknowledged_through(events, {5, 6, 8}, since=4) == 6
    assert acknowledged_through(events, {6, 7, 8}, since=4) == 4
    assert acknowledged_through(events, {5, 6, 7, 8}, since=4) == 8


def test_events_go_out_on_one_subject_per_saga() -> None:
    assert subject_of("shop.eu", event(1, "0b7c", 1)) == "shop.eu.sagas.0b7c"


@pytest.mark.parametrize(
    ("pattern", "taken"),
    [
        ("ordersaga.>", True),
        (">", True),
        ("*.>", True),
        ("ordersaga.sagas.*", True),
        ("ordersaga.sagas.>", True),
        ("ordersaga.*.*", True),
        ("ordersaga.*", False),
        ("ordersaga", False),
        ("ordersaga.sagas", False),
        ("ordersaga.sagas.x", False),
        ("other.>", False),
        ("ordersaga.sagas.*.more", False),
    ],
)
def test_a_stream_takes_the_events_when_a_subject_pattern_covers_every_saga(
    pattern: str, taken: bool
) -> None:
    assert covers(pattern, "ordersaga.sagas.*") is taken


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:secret@nats.example:4222", "nats://nats.example:4222"),
        ("tls://token@nats.example", "tls://nats.example"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://u:p@[::1]:4222", "nats://[::1]:4222"),
    ],
)
def test_the_nats_url_is_logged_without_its_credentials(url: str, shown: str) -> None:
    assert without_credentials(url) == shown
