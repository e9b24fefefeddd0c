"""The event stream while its NATS server is down and back, over real HTTP, on SQLite and PostgreSQL:
the API keeps taking and running orders, /readyz stays 200 and says the relay is behind and how many
events wait (/metrics too), and once the server is back every event goes out, once, in order per
saga."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from api.service import Service
from api.settings import Settings
from tests.api.server import graphql_client, place, stock
from tests.api.test_observability_http import samples
from tests.integration.support import FAST, logged_events
from tests.jetstream import (
    assert_each_event_once_in_order,
    nats_server,
    stored,
    unique_stream,
    wait_for_stream,
)


async def readyz_until(gql: Any, state: str, seconds: float = 30) -> dict[str, Any]:
    """/readyz's answer once it shows the relay in `state`; it must be 200 all along."""
    answer: dict[str, Any] = {}
    for _ in range(int(seconds / 0.05)):
        response = await gql.http.get("/readyz")
        assert response.status_code == 200, response.text
        answer = response.json()
        if answer["relays"][0]["state"] == state:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"the relay did not become {state}: {answer}")


async def relay_metrics(gql: Any, svc: Service) -> tuple[str, float]:
    """The state /metrics gives the relay (the one sample at 1), and its position."""
    metrics = samples((await gql.http.get("/metrics")).text, svc.settings.instance)
    [state] = [
        dict(labels)["state"]
        for (name, labels), value in metrics.items()
        if name == "ordersaga_relay_state" and value == 1
    ]
    [position] = [value for (name, _), value in metrics.items() if name == "ordersaga_relay_position"]
    return state, position


async def test_nats_down_and_back_events_wait_then_go_out_and_the_api_keeps_working(
    database_url: str, nats_server_binary: Path, tmp_path: Path
) -> None:
    async with nats_server(nats_server_binary, tmp_path / "nats") as nats:
        stream = unique_stream(nats.url)
        svc = Service(Settings(database_url=database_url, policy=FAST, stream=stream))
        async with graphql_client(svc) as gql:
            await stock(gql, quantity=20)
            before = [(await place(gql, 1))["saga"]["id"] for _ in range(2)]
            for saga_id in before:
                await gql.wait_for_saga(saga_id, "COMPLETED")
            published = len(await logged_events(database_url))
            await wait_for_stream(stream, published)
            ready = await readyz_until(gql, "current")
            assert ready == {
                "status": "ready",
                "relays": [{"name": f"stream:{stream.stream}", "state": "current"}],
            }

            await nats.stop()
            during = [(await place(gql, 1))["saga"]["id"] for _ in range(3)]
            for saga_id in during:
                await gql.wait_for_saga(saga_id, "COMPLETED")
            behind = await readyz_until(gql, "behind")
            assert behind["relays"][0]["waiting"] == len(await logged_events(database_url)) - published > 0
            assert await relay_metrics(gql, svc) == ("behind", published)

            await nats.start()
            await readyz_until(gql, "current")
            events = await logged_events(database_url)
            await wait_for_stream(stream, len(events))
            assert await relay_metrics(gql, svc) == ("current", len(events))
        assert_each_event_once_in_order(await stored(stream), events, stream.subject_prefix)
