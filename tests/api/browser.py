"""Headless Chromium for the browser tests, driven with Selenium from the test's event loop, with no
route to any host but loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.remote.webdriver import WebDriver

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
    # Every name but loopback fails to resolve: a page that reached for another host would break.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def start_chromium(profile: Path) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = (
            f"the browser tests need Debian's chromium and chromium-driver; missing: "
            f"{', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        )
        if os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(message)
        pytest.skip(message)
    options = Options()
    # With both paths given, Selenium neither looks for nor downloads a browser or a driver.
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser, driven from the test's event loop: WebDriver calls block, so each runs in a thread
    while the server goes on serving in the loop."""

    def __init__(self, driver: WebDriver, screenshots: Path) -> None:
        self.driver = driver
        self.scripts: list[str] = []
        self.screenshots = screenshots

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
        await self.screenshot("timed-out")
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

    async def click(self, css: str) -> None:
        await self.run("document.querySelector(arguments[0]).click()", css)

    async def press(self, *keys: str) -> None:
        """Keys typed on the keyboard, into whatever has the focus."""
        await asyncio.to_thread(ActionChains(self.driver).send_keys(*keys).perform)

    async def before_every_document(self, source: str) -> None:
        added = await asyncio.to_thread(
            self.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": source}
        )
        self.scripts.append(added["identifier"])

    async def prefer_color_scheme(self, scheme: str) -> None:
        """Make the page see `prefers-color-scheme: scheme` ("light" or "dark")."""
        features = [{"name": "prefers-color-scheme", "value": scheme}]
        await asyncio.to_thread(
            self.driver.execute_cdp_cmd, "Emulation.setEmulatedMedia", {"features": features}
        )

    async def loaded_from(self) -> list[str]:
        """Every resource the page has loaded (scripts, styles, requests), by URL."""
        return await self.run("return performance.getEntriesByType('resource').map(e => e.name)")  # type: ignore[no-any-return]

    async def screenshot(self, name: str) -> Path:
        """A PNG of the window, kept in the test's temporary directory, to look at."""
        path = self.screenshots / f"{name}.png"
        await asyncio.to_thread(self.driver.save_screenshot, str(path))
        return path
