"""The console's list and metrics: served by the app, self-contained, and live in a real headless
Chromium."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from domain.model.saga import Participant
from tests.api.browser import Page
from tests.api.live import Live
from tests.api.server import TLS

METRICS = {
    "started": 8,
    "completed": 6,
    "failed": 2,
    "needsAttention": 0,
    "completionRate": 0.75,
    "averageDurationMs": 412.4,
    "p95DurationMs": 1830,
    "compensations": 2,
    "timeouts": 1,
    "steps": [
        {
            "name": "RESERVE_STOCK",
            "attempts": 9,
            "succeeded": 6,
            "failed": 2,
            "timedOut": 1,
            "averageDurationMs": 35,
            "p95DurationMs": 120,
        }
    ],
    "warehouseCommands": [
        {
            "warehouseCode": "W2",
            "type": "CreateShipment",
            "sent": 3,
            "outcomes": [{"outcome": "CREATED", "count": 2}, {"outcome": "UNAVAILABLE", "count": 1}],
            "latencyMsAverage": 1340.5,
            "latencyMsMax": 4000,
            "lastLatencyMs": 12.2,
            "lastResponse": "HTTP 200: CREATED",
            "lastAt": "2026-01-02T03:04:05Z",
        }
    ],
}


async def test_the_console_is_served_and_loads_nothing_from_elsewhere(live_on_sqlite: Live) -> None:
    async with httpx.AsyncClient(base_url=live_on_sqlite.url, follow_redirects=True, verify=TLS) as http:
        page = await http.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert str(page.url).endswith("/dashboard/")
        # The page's own files and what their modules import, followed to the end.
        links = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert sorted(link for link in links if link.startswith("/vendor/")) == [
            "/vendor/uplot/uPlot.iife.min.js",
            "/vendor/uplot/uPlot.min.css",
        ]
        pending = [f"/dashboard/{link}" for link in links if not link.startswith(("/", "data:"))]
        seen = set()
        while pending:
            asset = pending.pop()
            seen.add(asset)
            served = await http.get(asset)
            assert served.status_code == 200, asset
            assert not re.search(r"https?://|@import|url\(", served.text), asset
            imported = re.findall(r'from "\./([\w.]+)"', served.text)
            pending += [f"/dashboard/{name}" for name in imported if f"/dashboard/{name}" not in seen]
        modules = (
            "dashboard.css",
            "dashboard.js",
            "graphql.js",
            "dom.js",
            "list.js",
            "saga.js",
            "charts.js",
            "bulk.js",
            "webhooks.js",
        )
        assert seen == {f"/dashboard/{name}" for name in modules}


async def test_the_dashboard_shows_sagas_complete_and_fail_live_without_a_reload(
    page: Page, live: Live
) -> None:
    await page.open(f"{live.url}/dashboard")
    await page.until_connection("live")
    await live.until_subscribed(1)
    await page.run("window.stillTheSamePage = true")

    completing, failing = await live.place(2), await live.place(9)
    row = 'return document.querySelector(`tr[data-saga-id="${arguments[0]}"]`)?.dataset.status'
    assert await page.until(f"{row} === 'COMPLETED'", completing, what="the order COMPLETED")
    assert await page.until(f"{row} === 'FAILED'", failing, what="the shortage FAILED")

    done, failed = f'tr[data-saga-id="{completing}"]', f'tr[data-saga-id="{failing}"]'
    assert await page.text(f"{done} .status") == "COMPLETED"
    assert await page.texts(f"{done} td:nth-child(4) .step") == [
        f"{step}\nSucceeded" for step in ("Create order", "Reserve stock", "Confirm order", "Create shipment")
    ]
    assert await page.text(f"{failed} .status") == "FAILED"
    reason = (await live.gql.wait_for_saga(failing, "FAILED"))["failureReason"]
    assert reason.startswith("insufficient stock: TEA")
    assert await page.text(f"{failed} .reason") == reason
    assert await page.texts(f"{failed} .failure .step") == ["Cancel order\nSucceeded"]
    assert await page.run("return window.stillTheSamePage === true"), "the page was reloaded"
    loaded = await page.loaded_from()
    assert loaded and all(url.startswith(f"{live.url}/") for url in loaded), loaded
    # Shown once each, however the page and the feed both brought them.
    assert await page.run("return document.querySelectorAll('#sagas tr').length") == 2

    await page.click("input[name=status][value=FAILED]")
    await page.click("#filter button[type=submit]")
    shown = "return [...document.querySelectorAll('#sagas tr')].map(r => r.dataset.sagaId)"
    assert await page.until(f"{shown}.join() === arguments[0]", failing, what="only the FAILED saga")
    await page.screenshot("failed-only")


async def test_a_saga_started_before_the_page_opened_is_listed_and_followed(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(1)  # its first two transitions commit before the page opens
    await page.open(f"{live.url}/dashboard/")
    await page.until_connection("live")
    await live.until_subscribed(1)
    row = 'return document.querySelector(`tr[data-saga-id="${arguments[0]}"]`)?.dataset.status'
    assert await page.until(f"{row} === 'STOCK_RESERVING'", saga_id, what="the saga reserving stock")
    live.gate.release(Participant.INVENTORY)
    assert await page.until(f"{row} === 'COMPLETED'", saga_id, what="the saga COMPLETED")

    await page.click(f'tr[data-saga-id="{saga_id}"] a')
    caption = "return document.querySelector('#journal caption')?.textContent"
    assert await page.until(f"{caption} === 'Journal (7 events)'", what="all 7 events on its page")


async def test_after_a_lost_connection_the_dashboard_catches_up_on_what_it_missed(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    # While `offline` is set, the page's new WebSockets go to a closed port and fail.
    await page.before_every_document(
        """
        const RealWebSocket = window.WebSocket;
        window.sockets = [];
        window.WebSocket = function (url, protocols) {
          const target = new URL(url);
          if (window.offline) target.port = "9";
          const socket = new RealWebSocket(target, protocols);
          window.sockets.push(socket);
          return socket;
        };
        """
    )
    await page.open(f"{live.url}/dashboard/")
    await page.until_connection("live")
    await live.until_subscribed(1)
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(1)
    row = 'return document.querySelector(`tr[data-saga-id="${arguments[0]}"]`)?.dataset.status'
    await page.until(f"{row} === 'STOCK_RESERVING'", saga_id, what="the saga reserving stock")

    await page.run("window.offline = true; window.sockets[0].close()")
    await page.until_connection("offline")
    await live.until_subscribed(0)
    live.gate.release(Participant.INVENTORY)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await page.run("window.offline = false")

    await page.until(f"{row} === 'COMPLETED'", saga_id, what="the saga COMPLETED after reconnecting")
    assert await page.text(f'tr[data-saga-id="{saga_id}"] .status') == "COMPLETED"


@pytest.mark.parametrize(
    ("answer", "shown"),
    [({"data": {"sagaMetrics": METRICS}}, True), ({"data": None, "errors": [{"message": "no"}]}, False)],
    ids=["answered", "refused"],
)
async def test_the_metrics_panel_shows_saga_metrics_and_is_left_out_when_the_query_fails(
    page: Page, live_on_sqlite: Live, answer: dict[str, Any], shown: bool
) -> None:
    # The page's sagaMetrics query gets this answer; every other request goes to the server.
    await page.before_every_document(
        f"""
        const serverFetch = window.fetch.bind(window);
        window.metricsWindows = [];
        window.fetch = (url, init) => {{
          const request = init ? JSON.parse(init.body) : {{}};
          if (!String(request.query).includes("sagaMetrics")) return serverFetch(url, init);
          const {{since, until}} = request.variables;
          window.metricsWindows.push((Date.parse(until) - Date.parse(since)) / 1000);
          return Promise.resolve(new Response({json.dumps(json.dumps(answer))},
            {{headers: {{"content-type": "application/json"}}}}));
        }};
        """
    )
    await page.open(f"{live_on_sqlite.url}/dashboard/")
    await page.until_connection("live")
    state = "shown" if shown else "unavailable"
    polled = "return document.getElementById('metrics').dataset.state === arguments[0]"
    await page.until(polled, state, what=f"the metrics panel {state}")

    assert await page.run("return document.getElementById('metrics').hidden") is not shown
    if shown:
        figures = await page.texts("#figures div")
        assert "Completion rate\n75.0 %" in figures and "p95 duration\n1.8 s" in figures
        assert "Average duration\n412 ms" in figures and "Timeouts\n1" in figures
        # The stubbed answer has no p50.
        assert await page.texts("#step-metrics tr") == ["Reserve stock\t9\t6\t2\t1\t35 ms\t—\t120 ms"]
        (commands,) = await page.texts("#warehouse-command-rows tr")
        assert commands.split("\t")[:8] == [
            "W2",
            "CreateShipment",
            "3",
            "2 CREATED, 1 UNAVAILABLE",
            "1.3 s",
            "4.0 s",
            "12 ms",
            "HTTP 200: CREATED",
        ]

        choose = "const w = document.getElementById('metrics-window'); w.value = arguments[0];"
        await page.run(f"{choose} w.dispatchEvent(new Event('change'))", "900")
        asked = "return window.metricsWindows.at(-1) === 900"
        assert await page.until(asked, what="the metrics of the last 15 minutes asked for")
        assert await page.run("return window.metricsWindows[0]") == 3600
