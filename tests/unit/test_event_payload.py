"""The body every outbound adapter sends (`LoggedEvent.payload`), as a property: for any event, text
of any kind included, it is compact JSON in UTF-8 of the documented shape, which any JSON library
reads back as it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from persistence.read.event_log import LoggedEvent, encode_cursor

texts = st.text()
events = st.builds(
    LoggedEvent,
    position=st.integers(1, 2**62),
    saga_id=texts,
    order_id=texts,
    customer_id=texts,
    sequence=st.integers(1, 2**31),
    type=texts,
    status=texts,
    step=st.none() | texts,
    attempt=st.none() | st.integers(0, 2**31),
    reason=st.none() | texts,
    # Whole seconds too: isoformat leaves their fraction out, as the body does.
    occurred_at=st.datetimes(timezones=st.just(UTC))
    | st.datetimes(timezones=st.just(UTC)).map(lambda at: at.replace(microsecond=0)),
)


@given(events)
def test_the_body_is_the_compact_json_of_the_event(event: LoggedEvent) -> None:
    expected = {
        "type": event.type,
        "timestamp": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "sagaId": event.saga_id,
            "orderId": event.order_id,
            "sequence": event.sequence,
            "status": event.status,
            "cursor": encode_cursor(event.position),
            "step": event.step,
            "attempt": event.attempt,
            "reason": event.reason,
        },
    }
    body = event.payload()
    assert json.loads(body.decode()) == expected
    assert body == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_body_as_a_receiver_reads_it() -> None:
    at = datetime(2026, 12, 5, 4, 5, 6, 789, tzinfo=UTC)
    event = LoggedEvent(
        7, "s-1", "o-1", "c", 2, "StepFailed", "STOCK_RESERVING", "reserveStock", 1, 'a "b"\né', at
    )
    assert event.payload() == (
        b'{"type":"StepFailed","timestamp":"2026-12-05T04:05:06.000789Z","data":{"sagaId":"s-1",'
        b'"orderId":"o-1","sequence":2,"status":"STOCK_RESERVING","cursor":"am91cm5hbDo3",'
        b'"step":"reserveStock","attempt":1,"reason":"a \\"b\\"\\n\xc3\xa9"}}'
    )
