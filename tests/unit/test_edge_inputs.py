"""Input by kind, as properties: times are read in UTC or refused, and a cursor is taken only if this
API could have made it."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from graphql import GraphQLError
from hypothesis import given
from hypothesis import strategies as st

from api.graphql.inputs import as_utc
from api.graphql.relay import decode_cursor, encode_cursor
from persistence.paging import Position

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
    assert decode_cursor(encode_cursor(position)) == position


@given(st.text() | st.binary().map(lambda raw: base64.urlsafe_b64encode(raw).decode()))
def test_any_other_cursor_is_an_invalid_cursor(cursor: str) -> None:
    try:
        position = decode_cursor(cursor)
    except GraphQLError as error:
        assert refused(error) and error.message.startswith("invalid cursor")
        return
    assert encode_cursor(position) == cursor
    assert str(uuid.UUID(position.id)) == position.id


def test_a_cursor_with_a_time_off_the_utc_calendar_is_an_invalid_cursor() -> None:
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-5)))
    raw = f'["{late.isoformat()}", "{uuid.uuid4()}"]'.encode()
    with pytest.raises(GraphQLError, match="invalid cursor"):
        decode_cursor(base64.urlsafe_b64encode(raw).decode())
