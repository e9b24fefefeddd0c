"""What a remote warehouse's HTTP answer means (api/outbound/warehouse.py): created, accepted for
later, refused, or transient, and how long a Retry-After asks to wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.outbound.warehouse import MAX_RETRY_AFTER, answer, retry_after
from domain.model.saga import Accepted, Rejected, Step, Succeeded, Unavailable

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
CREATE, CANCEL = Step.CREATE_SHIPMENT, Step.CANCEL_SHIPMENT


def response(status: int, json: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=json, headers=headers)


@pytest.mark.parametrize(
    ("step", "answered", "meaning"),
    [
        (CREATE, response(200, {"status": "CREATED", "reference": "R-1"}), Succeeded(reference="R-1")),
        (CREATE, response(201, {"status": "CREATED"}), Succeeded()),
        (CREATE, response(200, {"status": "REJECTED", "reason": "no carrier"}), Rejected("no carrier")),
        (CREATE, response(202), Accepted()),
        (CANCEL, response(202), Succeeded()),
        (CANCEL, response(204), Succeeded()),
        (CREATE, response(422, {"error": "bad sku"}), Rejected('HTTP 422: {"error":"bad sku"}')),
        (CREATE, response(404), Rejected("HTTP 404:")),
        (
            CREATE,
            response(200, ["not", "an", "object"]),
            Unavailable("HTTP 200 without a status CREATED or REJECTED"),
        ),
        (
            CREATE,
            response(200, {"status": "MAYBE"}),
            Unavailable("HTTP 200 without a status CREATED or REJECTED"),
        ),
        (CREATE, response(503), Unavailable("HTTP 503")),
        (CREATE, response(408), Unavailable("HTTP 408")),
        (CREATE, response(409), Unavailable("HTTP 409")),
        (CREATE, response(302, headers={"location": "/elsewhere"}), Unavailable("HTTP 302")),
        # JSON that Python's decoder cannot read: nested too deeply, or a number of 5,000 digits.
        (
            CREATE,
            httpx.Response(200, content=b"[" * 200_000),
            Unavailable("HTTP 200 without a status CREATED or REJECTED"),
        ),
        (
            CREATE,
            httpx.Response(200, content=b'{"status": "CREATED", "reference": ' + b"9" * 5000 + b"}"),
            Unavailable("HTTP 200 without a status CREATED or REJECTED"),
        ),
    ],
)
def test_each_answer_means_what_the_protocol_says(
    step: Step, answered: httpx.Response, meaning: object
) -> None:
    assert answer(step, answered) == meaning


def test_a_429_waits_as_long_as_its_retry_after_asks() -> None:
    assert answer(CREATE, response(429, headers={"retry-after": "7"})) == Unavailable(
        "HTTP 429", timedelta(seconds=7)
    )


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", timedelta(seconds=120)),
        ("Sat, 05 Dec 2026 12:00:30 GMT", timedelta(seconds=30)),
        ("Sat, 05 Dec 2026 11:00:00 GMT", timedelta(0)),
        ("99999999999999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),  # more digits than Python reads
        ("0" * 5000 + "7", timedelta(seconds=7)),
        ("soon", None),
        ("\u00b2", None),  # a digit to Unicode, not to HTTP
        ("", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_capped(header: str, wait: timedelta | None) -> None:
    assert retry_after({"retry-after": header} if header else {}, NOW) == wait
