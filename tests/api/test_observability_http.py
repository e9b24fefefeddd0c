"""/metrics in Prometheus text and /readyz, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.outbound.stream import RelayState
from api.service import Service
from api.settings import Settings, StreamSettings
from api.web.app import create_app
from persistence.database import make_engine
from tests.api.server import TLS, serve
from tests.integration.staging import make_stage
from tests.polling import eventually


def samples(text: str, instance: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels, once checked that each names the process it came from."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("instance") == instance, sample
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


async def test_metrics_count_what_the_sagas_did(database_url: str) -> None:
    stage = make_stage(database_url)
    async with serve(stage.svc) as base_url, httpx.AsyncClient(base_url=base_url, verify=TLS) as http:
        await stage.stock()
        await stage.outcomes()
        response = await http.get("/metrics")
        assert (await http.get("/readyz")).json() == {"status": "ready"}

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    metrics = samples(response.text, stage.svc.settings.instance)
    counts = {
        name: metrics[(f"ordersaga_{name}_total", ())]
        for name in [
            "sagas_started",
            "sagas_completed",
            "sagas_failed",
            "sagas_needing_attention",
            "sagas_compensated",
            "sagas_timed_out",
            # The refused and the held reservation never reached the inventory.
            "stock_reservations",
            "stock_conflicts",
        ]
    }
    assert counts == {
        "sagas_started": 6,
        "sagas_completed": 2,
        "sagas_failed": 3,
        "sagas_needing_attention": 1,
        "sagas_compensated": 3,
        "sagas_timed_out": 1,
        "stock_reservations": 5,
        "stock_conflicts": 0,
    }
    # Finished sagas took 0, 1, 0, 3 and 10 seconds.
    assert metrics[("ordersaga_saga_duration_seconds_count", ())] == 5
    assert metrics[("ordersaga_saga_duration_seconds_sum", ())] == 14
    assert metrics[("ordersaga_saga_duration_seconds_bucket", (("le", "2.5"),))] == 3
    reserve = (("step", "RESERVE_STOCK"),)
    assert metrics[("ordersaga_step_duration_seconds_count", reserve)] == 6
    assert metrics[("ordersaga_step_duration_seconds_sum", reserve)] == 11
    assert metrics[("ordersaga_commits_total", ())] >= 1
    assert metrics[("ordersaga_running_sagas", ())] == 0


async def test_readyz_needs_a_started_service_and_an_answering_database() -> None:
    # Nothing listens on port 1: the database does not answer.
    svc = Service(Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://ordersaga") as http:
        assert (await http.get("/readyz")).status_code == 503  # not started
        svc.ready = True  # as if started, then the database went away
        answer = await http.get("/readyz")
        assert (answer.status_code, answer.json()) == (503, {"status": "unavailable", "restarting": []})


async def test_readyz_says_which_background_task_waits_to_be_restarted(database_url: str) -> None:
    stage = make_stage(database_url)
    dying = asyncio.Event()

    async def dies() -> None:
        dying.set()
        raise ConnectionError("the listening connection is gone")

    async with serve(stage.svc) as base_url, httpx.AsyncClient(base_url=base_url, verify=TLS) as http:
        assert (await http.get("/readyz")).status_code == 200
        stage.svc.background.keep("commit-listener", dies)
        await dying.wait()
        await eventually(lambda: bool(stage.svc.background.down), "the death to be reported")
        response = await http.get("/readyz")
        assert (response.status_code, response.json()) == (
            503,
            {"status": "unavailable", "restarting": ["commit-listener"]},
        )
        assert "listening connection" not in response.text  # the reason is for the log


async def rename_table(database_url: str, name: str, new_name: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {name} RENAME TO {new_name}"))
    finally:
        await engine.dispose()


async def test_readyz_is_503_when_the_relays_state_cannot_be_read_after_the_readiness_check(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: the relay stays behind, and its state then counts the events
    # waiting, reading the journal's head.
    stream = StreamSettings(url="nats://127.0.0.1:1")
    svc = Service(Settings(database_url=database_url, stream=stream))
    async with serve(svc) as base_url, httpx.AsyncClient(base_url=base_url, verify=TLS) as http:
        relay = svc.stream
        assert relay is not None
        await eventually(lambda: relay.state is RelayState.BEHIND, "the relay to fall behind")
        assert (await http.get("/readyz")).status_code == 200
        # The database still answers the readiness check, but the relays' state can no longer be read.
        await rename_table(database_url, "journal_head", "journal_head_gone")
        try:
            answer = await http.get("/readyz")
        finally:
            await rename_table(database_url, "journal_head_gone", "journal_head")
    assert (answer.status_code, answer.json()) == (503, {"status": "unavailable", "restarting": []})
    assert "not ready: the relays' state could not be read" in caplog.text
