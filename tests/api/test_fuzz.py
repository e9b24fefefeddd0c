"""Schema-driven fuzzing over real HTTP on each database: operations generated from the schema
(hypothesis-graphql), over every query and mutation, valid ones and ones with a schema violation.
No answer is a 5xx, no error is masked (a masked error is a fault of ours) or shows internal text,
every error carries a code, and the stock invariants hold afterwards. Seeded (derandomized), so a
failure reproduces; bounded in examples, so it ends in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from api.graphql.schema import schema
from api.service import Service
from api.settings import Settings
from domain.model.problems import MAX_COUNT
from tests.api.server import TLS, serve

EXAMPLES = 200
pytestmark = pytest.mark.slow(seconds=10)  # EXAMPLES generated operations a test
INTERNAL_TEXT = ("Traceback", "SQL", "sqlalchemy", "asyncpg", "sqlite3", "psycopg", "codec can't")
OFFSETS = [None, UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))]
# Times at the ends of the calendar too, with and without an offset.
DATE_TIMES = st.builds(
    lambda at, offset: at.replace(tzinfo=offset).isoformat(),
    st.one_of(
        st.sampled_from([datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59)]),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    ),
    st.sampled_from(OFFSETS),
).map(nodes.String)
SCALARS = {"DateTime": DATE_TIMES}
SDL = schema.as_str()
STOCK = (
    "{ warehouses { sections { stock { sku onHand reserved available } } } products { sku onHand reserved } }"
)


@contextlib.contextmanager
def served_in_a_thread(database_url: str) -> Iterator[httpx.Client]:
    """A real server with its own event loop in a thread, so that hypothesis can drive it from the
    test's (synchronous) body."""
    ready: threading.Event = threading.Event()
    state: dict[str, Any] = {}

    async def run() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        async with serve(Service(Settings(database_url=database_url))) as url:
            state["url"] = url
            ready.set()
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the server did not start"
    try:
        with httpx.Client(base_url=state["url"], timeout=30, verify=TLS) as client:
            yield client
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(30)


def post(client: httpx.Client, query: str) -> httpx.Response:
    # JSON escapes keep lone surrogates sendable.
    body = json.dumps({"query": query})
    return client.post("/graphql", content=body, headers={"content-type": "application/json"})


def check_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    text = response.text
    assert not any(internal in text for internal in INTERNAL_TEXT), text
    for error in response.json().get("errors", []):
        code = error.get("extensions", {}).get("code")
        assert code is not None and code != "INTERNAL_SERVER_ERROR", error


def check_stock(client: httpx.Client) -> None:
    response = post(client, STOCK)
    check_answer(response)
    data = response.json()["data"]
    totals: dict[str, int] = {}
    for warehouse in data["warehouses"]:
        for section in warehouse["sections"]:
            for level in section["stock"]:
                assert 0 <= level["reserved"] <= level["onHand"] <= MAX_COUNT, level
                assert level["available"] == level["onHand"] - level["reserved"], level
                totals[level["sku"]] = totals.get(level["sku"], 0) + level["onHand"]
    for product in data["products"]:
        assert product["onHand"] == totals.get(product["sku"], 0) <= MAX_COUNT, product


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE])
def test_generated_operations_get_clean_coded_answers_and_keep_the_stock_sound(
    database_url: str, mode: Mode
) -> None:
    with served_in_a_thread(database_url) as client:

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(from_schema(SDL, custom_scalars=SCALARS, codec=None, mode=mode))
        def operation_answers_cleanly(query: str) -> None:
            check_answer(post(client, query))

        operation_answers_cleanly()
        check_stock(client)
