"""Bulk retries and aborts (`retrySagas`, `abortSagas`) over real HTTP against a served instance with
fault injection on, on each database: a result per saga, a bounded call, and a second call that
answers ALREADY for what the first handled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.graphql.bulk import MAX_BULK_SAGAS
from tests.api.server import GraphQLClient, place, stage
from tests.api.test_operations_http import serve_client

RESULTS = "results { sagaId outcome code message saga { id status } } userErrors { code field message }"
RETRY_SAGAS = f"mutation ($ids: [ID!]!) {{ retrySagas(input: {{sagaIds: $ids}}) {{ {RESULTS} }} }}"
ABORT_SAGAS = (
    "mutation ($ids: [ID!]!, $reason: String!) "
    f"{{ abortSagas(input: {{sagaIds: $ids, reason: $reason}}) {{ {RESULTS} }} }}"
)
UNKNOWN = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    async for client in serve_client(database_url, fault_injection=True):
        yield client


async def parked(gql: GraphQLClient, count: int) -> list[str]:
    """`count` sagas parked at their shipment, which fails until the faults are cleared."""
    await stage(gql, "SHIPMENT", failureRate=1.0)
    ids = [(await place(gql, 1))["saga"]["id"] for _ in range(count)]
    for saga_id in ids:
        await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    return ids


def outcomes(payload: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(r["sagaId"], r["outcome"], r["code"]) for r in payload["results"]]


async def test_a_bulk_retry_answers_each_saga_and_a_second_call_answers_already(gql: GraphQLClient) -> None:
    ids = await parked(gql, 3)
    await gql("mutation { clearParticipantFaults { faults { participant } } }")

    retried = (await gql(RETRY_SAGAS, ids=[*ids, ids[0], UNKNOWN]))["retrySagas"]
    assert retried["userErrors"] == []
    # One result per distinct id, in the order sent.
    assert outcomes(retried) == [
        *((saga_id, "DONE", None) for saga_id in ids),
        (UNKNOWN, "REFUSED", "UNKNOWN_SAGA"),
    ]
    assert [r["saga"]["id"] for r in retried["results"][:3]] == ids
    for saga_id in ids:
        await gql.wait_for_saga(saga_id, "COMPLETED")

    again = (await gql(RETRY_SAGAS, ids=ids))["retrySagas"]
    assert outcomes(again) == [(saga_id, "ALREADY", "SAGA_NOT_PARKED") for saga_id in ids]
    assert all(r["saga"] is None and "COMPLETED" in r["message"] for r in again["results"])


async def test_a_bulk_abort_compensates_each_saga_once(gql: GraphQLClient) -> None:
    ids = await parked(gql, 2)
    aborted = (await gql(ABORT_SAGAS, ids=ids, reason="carrier gone"))["abortSagas"]
    assert outcomes(aborted) == [(saga_id, "DONE", None) for saga_id in ids]
    for saga_id in ids:
        saga = await gql.wait_for_saga(saga_id, "FAILED")
        assert saga["failureReason"] == "carrier gone"
        assert [e["type"] for e in saga["events"]].count("SagaAborted") == 1

    again = (await gql(ABORT_SAGAS, ids=ids, reason="carrier gone"))["abortSagas"]
    assert outcomes(again) == [(saga_id, "ALREADY", "SAGA_FINISHED") for saga_id in ids]


async def test_a_bulk_call_refused_as_a_whole_touches_no_saga(gql: GraphQLClient) -> None:
    [saga_id] = await parked(gql, 1)
    too_many = [saga_id, *(f"00000000-0000-0000-0000-{n:012d}" for n in range(1, MAX_BULK_SAGAS + 1))]
    for ids, reason, refused in [
        ([], "carrier gone", [("REQUIRED", "sagaIds")]),
        (too_many, "carrier gone", [("OUT_OF_RANGE", "sagaIds")]),
        ([saga_id], "  ", [("REQUIRED", "reason")]),
    ]:
        payload = (await gql(ABORT_SAGAS, ids=ids, reason=reason))["abortSagas"]
        assert payload["results"] == []
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == refused
    saga = await gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    assert "SagaAborted" not in [e["type"] for e in saga["events"]]
