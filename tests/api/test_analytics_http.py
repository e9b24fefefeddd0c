"""sagaMetrics, sagaFailures, sagaActivity and Saga.compensations over real HTTP, on each database."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.server import TLS, GraphQLClient, serve
from tests.integration.staging import make_stage
from tests.service.fakes import START

METRICS = """
query ($since: DateTime, $until: DateTime) {
  sagaMetrics(since: $since, until: $until) {
    since until started completed failed needsAttention completionRate averageDurationMs p95DurationMs
    compensations timeouts
    steps { name attempts succeeded failed timedOut averageDurationMs p95DurationMs p50DurationMs }
    p50DurationMs
  }
  sagaFailures(since: $since, until: $until) { step kind reason count lastSeenAt }
}
"""


async def test_metrics_failures_and_compensations_over_http(database_url: str) -> None:
    stage = make_stage(database_url)
    async with (
        serve(stage.svc) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        gql = GraphQLClient(http)
        await stage.stock()
        sagas = await stage.outcomes()

        everything = await gql(METRICS)
        metrics = everything["sagaMetrics"]
        assert (metrics["since"], metrics["until"]) == (None, None)
        assert (metrics["started"], metrics["completed"], metrics["failed"], metrics["needsAttention"]) == (
            6,
            2,
            3,
            1,
        )
        assert metrics["completionRate"] == 0.4
        assert (metrics["averageDurationMs"], metrics["p95DurationMs"]) == (2800.0, 10000.0)
        assert metrics["p50DurationMs"] == 1000.0
        assert (metrics["compensations"], metrics["timeouts"]) == (3, 1)
        assert metrics["steps"][2] == {
            "name": "CONFIRM_ORDER",
            "attempts": 6,
            "succeeded": 3,
            "failed": 3,
            "timedOut": 0,
            "averageDurationMs": 750.0,
            "p95DurationMs": 3000.0,
            "p50DurationMs": 0.0,
        }
        assert [g["count"] for g in everything["sagaFailures"]] == [1, 1, 1, 1]

        since, until = START + timedelta(seconds=300), START + timedelta(hours=1)
        window = await gql(METRICS, since=since.isoformat(), until=until.isoformat())
        assert window["sagaMetrics"]["started"] == 1  # the parked saga alone
        assert window["sagaMetrics"]["completionRate"] is None
        assert window["sagaMetrics"]["averageDurationMs"] is None
        assert window["sagaFailures"] == [
            {
                "step": "CREATE_SHIPMENT",
                "kind": "UNAVAILABLE",
                "reason": "CREATE_SHIPMENT failed after 3 attempts: SHIPMENT is down",
                "count": 1,
                "lastSeenAt": (START + timedelta(seconds=317)).isoformat(),
            }
        ]

        query = "query ($id: ID!) { saga(id: $id) { compensations { name status attempts } } }"
        compensated = await gql(query, id=sagas["confirm_refused"])
        assert compensated["saga"]["compensations"] == [
            {"name": "RELEASE_STOCK", "status": "SUCCEEDED", "attempts": 1},
            {"name": "CANCEL_ORDER", "status": "SUCCEEDED", "attempts": 1},
        ]
        assert (await gql(query, id=sagas["completed"]))["saga"]["compensations"] == []


ACTIVITY = """
query ($since: DateTime!, $until: DateTime!) {
  sagaActivity(since: $since, until: $until) { start completed failed compensated }
}
"""


async def test_activity_per_minute_over_http_and_its_bound(database_url: str) -> None:
    stage = make_stage(database_url)
    async with (
        serve(stage.svc) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        gql = GraphQLClient(http)
        await stage.stock()
        await stage.outcomes()

        since, until = START + timedelta(minutes=1), START + timedelta(minutes=3)
        activity = await gql(ACTIVITY, since=since.isoformat(), until=until.isoformat())
        assert activity["sagaActivity"] == [
            {"start": since.isoformat(), "completed": 1, "failed": 0, "compensated": 0},
            {
                "start": (since + timedelta(minutes=1)).isoformat(),
                "completed": 0,
                "failed": 1,
                "compensated": 1,
            },
        ]

        too_long = {"since": since.isoformat(), "until": (since + timedelta(days=1, minutes=1)).isoformat()}
        answer = (await http.post("/graphql", json={"query": ACTIVITY, "variables": too_long})).json()
        assert answer["data"] is None
        [error] = answer["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "until"}
        assert "at most 1440 minutes" in error["message"]
