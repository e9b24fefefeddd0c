"""Input by kind, as properties: times are read in UTC or refused, date-times are RFC 3339 or
refused, and a cursor is taken only if this API could have made it."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from graphql import GraphQLError
from hypothesis import given
from hypothesis import strategies as st

from api.graphql.connections import decode_cursor, encode_cursor
from api.graphql.edge.inputs import as_utc, parse_date_time, unstorable_text
from persistence.read.paging import Position

offsets = st.none() | st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
times = st.builds(lambda at, offset: at.replace(tzinfo=offset), st.datetimes(), offsets)
positions = st.builds(Position, st.datetimes(timezones=st.just(UTC)), st.uuids().map(str))


def refused(error: GraphQLError) -> bool:
    return error.extensions == {"code": "BAD_USER_INPUT"}


@given(times)
def test_a_time_is_read_in_utc_or_refused_as_bad_user_input(at: datetime) -> None:
    try:
        moved = as_utc(at)
    except GraphQLError as error:
        assert refused(error)
        assert at.tzinfo is not None  # only an offset can take a time off the calendar
        return
    assert moved.tzinfo is UTC
    assert moved == (at.replace(tzinfo=UTC) if at.tzinfo is None else at)  # the same instant


@given(positions)
def test_a_cursor_this_api_made_decodes_to_its_position(position: Position) -> None:
    assert decode_cursor(encode_cursor(position), "after") == position


@given(st.text() | st.binary().map(lambda raw: base64.urlsafe_b64encode(raw).decode()))
def test_any_other_cursor_is_an_invalid_cursor(cursor: str) -> None:
    try:
        position = decode_cursor(cursor, "before")
    except GraphQLError as error:
        # Naming the argument that holds it, as every refused argument is named.
        assert error.extensions == {"code": "BAD_USER_INPUT", "argument": "before"}
        assert error.message.startswith("invalid cursor")
        return
    assert encode_cursor(position) == cursor
    assert str(uuid.UUID(position.id)) == position.id


def test_a_cursor_with_a_time_off_the_utc_calendar_is_an_invalid_cursor() -> None:
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))
    raw = f'["{late.isoformat()}", "{uuid.uuid4()}"]'.encode()
    with pytest.raises(GraphQLError, match="invalid cursor"):
        decode_cursor(base64.urlsafe_b64encode(raw).decode(), "after")


def rfc_3339(at: datetime, fraction: str, t: str, z: str) -> str:
    """`at` (an aware time) as RFC 3339 writes it, with `fraction` digits, and "T" and "Z" as given."""
    offset = at.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    zone = (
        z if minutes == 0 else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
    )
    day = f"{at.year:04}-{at.month:02}-{at.day:02}"  # strftime's %Y does not pad years before 1000
    return f"{day}{t}{at:%H:%M:%S}{'.' + fraction if fraction else ''}{zone}"


aware_times = st.builds(
    lambda at, offset: at.replace(tzinfo=offset),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), allow_imaginary=True),
    offsets.filter(lambda offset: offset is not None),
)
fractions = st.text("0123456789", max_size=9)


@given(aware_times, fractions, st.sampled_from("Tt"), st.sampled_from("Zz"))
def test_an_rfc_3339_date_time_is_read_as_its_instant(at: datetime, fraction: str, t: str, z: str) -> None:
    read = parse_date_time(rfc_3339(at, fraction, t, z))
    assert read.tzinfo is UTC
    microseconds = int(fraction.ljust(6, "0")[:6]) if fraction else 0
    assert read == at.replace(microsecond=microseconds)


@given(aware_times, fractions, st.characters())
def test_a_date_time_with_anything_after_it_is_refused(at: datetime, fraction: str, extra: str) -> None:
    with pytest.raises(GraphQLError) as refusal:
        parse_date_time(rfc_3339(at, fraction, "T", "Z") + extra)
    assert refused(refusal.value)


@given(st.text(max_size=40) | st.integers() | st.none())
def test_anything_else_is_read_as_an_rfc_3339_date_time_or_refused(value: object) -> None:
    try:
        read = parse_date_time(value)
    except GraphQLError as error:
        assert refused(error)
        return
    assert isinstance(value, str) and read.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00Z\u0000",
        "2026-01-01T00:00:00." + "1" * 20 + "Z",
        "2026-01-01T00:00:00.1234567890Z",  # 10 digits
        "20260101T000000Z",
        "2026-01-01",
        "2026-01-01T00:00:00",  # no offset
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00Z",
        "2026-01-01T00:00:00+0100",
        "2026-01-01T00:00:00+01",
        "2026-01-01T00:00:00.Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",  # a leap second, which Python's datetimes do not hold
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+01:60",
        "\uff12026-01-01T00:00:00Z",  # a fullwidth digit
        " 2026-01-01T00:00:00Z",
    ],
)
def test_what_rfc_3339_does_not_allow_is_refused(value: str) -> None:
    with pytest.raises(GraphQLError) as refusal:
        parse_date_time(value)
    assert refused(refusal.value)


def test_text_is_checked_however_deep_the_variables_nest() -> None:
    nested: list[object] = []
    for _ in range(100_000):  # JSON a client may send, far past the interpreter's recursion limit
        nested = [nested]
    assert list(unstorable_text({"extra": [nested, "a\x00b"], "ok": ["fine", {"x": "\ud800"}]})) == [
        "extra[1]",
        "ok[1].x",
    ]
