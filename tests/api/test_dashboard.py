"""The dashboard: served by the app, self-contained, and live in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.remote.webdriver import WebDriver

from domain.saga import Participant
from tests.api.live import Live

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REQUIRE_BROWSER_ENV = "ORDERSAGA_REQUIRE_BROWSER"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]
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
}


async def test_the_dashboard_is_served_and_loads_nothing_from_elsewhere(live_on_sqlite: Live) -> None:
    async with httpx.AsyncClient(base_url=live_on_sqlite.url, follow_redirects=True) as http:
        page = await http.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert str(page.url).endswith("/dashboard/")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(assets) == ["dashboard.css", "dashboard.js"]
        for asset in assets:
            served = await http.get(f"/dashboard/{asset}")
            assert served.status_code == 200
            assert not re.search(r"https?://|@import|url\(", served.text), asset


# ---------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = (
            f"the dashboard's browser tests need Debian's chromium and chromium-driver; missing: "
            f"{', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        )
        if os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    # With both paths given, Selenium neither looks for nor downloads a browser or a driver.
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser, driven from the test's event loop: WebDriver calls block, so each runs in a thread
    while the server goes on serving in the loop."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.scripts: list[str] = []

    async def open(self, url: str) -> None:
        await asyncio.to_thread(self.driver.get, url)

    async def run(self, script: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def until(self, script: str, *args: Any, what: str, seconds: float = 20) -> Any:
        """Poll `script` until it returns something truthy; fail, saying `what`, after `seconds`."""
        for _ in range(int(seconds / 0.1)):
            if result := await self.run(script, *args):
                return result
            await asyncio.sleep(0.1)
        raise AssertionError(f"the page did not show {what} within {seconds:g}s")

    async def until_connection(self, state: str) -> None:
        shown = "return document.getElementById('connection').dataset.state === arguments[0]"
        await self.until(shown, state, what=f"the connection {state}")

    async def texts(self, css: str) -> list[str]:
        """The text a person sees in each element matching `css`, read at one moment: rows are
        redrawn as updates arrive."""
        found = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)"
        return await self.run(found, css)  # type: ignore[no-any-return]

    async def text(self, css: str) -> str:
        (text,) = await self.texts(css)
        return text

    async def before_every_document(self, source: str) -> None:
        added = await asyncio.to_thread(
            self.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": source}
        )
        self.scripts.append(added["identifier"])


@pytest.fixture
def page(chromium: WebDriver) -> Iterator[Page]:
    opened = Page(chromium)
    yield opened
    # The next test starts on a blank tab, with none of this test's scripts left to run.
    for identifier in opened.scripts:
        chromium.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": identifier})
    chromium.get("about:blank")


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
    assert await page.texts(f"{done} td:nth-child(3) .step") == [
        f"{step}\nSucceeded" for step in ("Create order", "Reserve stock", "Confirm order", "Create shipment")
    ]
    assert await page.text(f"{failed} .status") == "FAILED"
    reason = (await live.gql.wait_for_saga(failing, "FAILED"))["failureReason"]
    assert reason.startswith("insufficient stock: TEA")
    assert await page.text(f"{failed} .reason") == reason
    assert await page.texts(f"{failed} .failure .step") == ["Cancel order\nSucceeded"]
    assert await page.run("return window.stillTheSamePage === true"), "the page was reloaded"
    loaded = await page.run("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(f"{live.url}/") for url in loaded), loaded

    await page.run("document.querySelector('input[name=show][value=FAILED]').click()")
    shown = "return [...document.querySelectorAll('#sagas tr:not([hidden])')].map(r => r.dataset.sagaId)"
    assert await page.run(shown) == [failing]


async def test_a_saga_first_seen_mid_way_shows_its_whole_history(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    live.gate.hold(Participant.INVENTORY)
    saga_id = await live.place(1)  # its first two transitions commit before the page opens
    await page.open(f"{live.url}/dashboard/")
    await page.until_connection("live")
    await live.until_subscribed(1)
    live.gate.release(Participant.INVENTORY)

    history = f'tr[data-saga-id="{saga_id}"] summary'
    found = "return document.querySelector(arguments[0])?.textContent"
    assert await page.until(f"{found} === 'History (7 events)'", history, what="all 7 events")


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
        assert await page.texts("#step-metrics tr") == ["Reserve stock\t9\t6\t2\t1\t35 ms\t120 ms"]

        choose = "const w = document.getElementById('metrics-window'); w.value = arguments[0];"
        await page.run(f"{choose} w.dispatchEvent(new Event('change'))", "900")
        asked = "return window.metricsWindows.at(-1) === 900"
        assert await page.until(asked, what="the metrics of the last 15 minutes asked for")
        assert await page.run("return window.metricsWindows[0]") == 3600
