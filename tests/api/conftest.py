"""Served instances for the live tests (subscriptions, the console), and the browser."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from api.service import Service
from api.settings import Settings
from tests.api.browser import Page, start_chromium
from tests.api.live import Live, serve_live
from tests.api.server import TLS, GraphQLClient, serve, stock
from tests.integration.support import FAST


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[Live]:
    async with serve_live(Settings(database_url=database_url)) as served:
        yield served


@pytest.fixture
async def live_on_sqlite(sqlite_url: str) -> AsyncIterator[Live]:
    """For what does not depend on the database, such as the WebSocket protocol itself."""
    async with serve_live(Settings(database_url=sqlite_url)) as served:
        yield served


@pytest.fixture
async def gql(database_url: str) -> AsyncIterator[GraphQLClient]:
    """A served instance with short step timeouts, holding 5 TEA in W1/A."""
    settings = Settings(database_url=database_url, policy=FAST)
    async with (
        serve(Service(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10, verify=TLS) as http,
    ):
        client = GraphQLClient(http)
        await stock(client)
        yield client


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    yield from start_chromium(tmp_path_factory.mktemp("chromium"))


@pytest.fixture
def page(chromium: WebDriver, tmp_path: Path) -> Iterator[Page]:
    opened = Page(chromium, tmp_path)
    yield opened
    # The next test starts on a blank tab, with none of this test's scripts left.
    for identifier in opened.scripts:
        chromium.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": identifier})
    chromium.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    chromium.get("about:blank")
