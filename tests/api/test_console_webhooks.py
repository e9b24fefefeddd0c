"""The console's webhooks page in a real headless Chromium: the endpoints with their state, one
endpoint's deliveries that failed (status, attempts, response, error), filtered by status, sent again
with one click and then shown delivered, and a disabled endpoint enabled again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.settings import Settings
from tests.api.browser import Page
from tests.api.live import Live, serve_live
from tests.api.test_webhooks_http import CREATE, ENDPOINTS, ids_of, journal, settled_orders, stored_for
from tests.integration.support import FAST
from tests.receiver import Receiver

CHOOSE_STATUS = """const choice = document.getElementById('deliveries-status');
choice.value = arguments[0];
choice.dispatchEvent(new Event('change'));"""
ROWS = "return [...document.querySelectorAll('#deliveries tr')].map(r => r.dataset.status)"


@pytest.fixture
async def failing(tmp_path: Path) -> AsyncIterator[tuple[Live, Receiver, str]]:
    """A served instance whose one endpoint answers 500: deliveries fail after a second of retries,
    and the endpoint is disabled after three."""
    receiver = Receiver()
    receiver.answer = 500
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    settings = Settings(
        database_url=url,
        policy=FAST,
        webhook_retry_for=timedelta(seconds=1),
        webhook_disable_after=timedelta(seconds=3),
    )
    async with receiver.running(), serve_live(settings) as live:
        made = await live.gql(CREATE, input={"url": receiver.url, "description": "the ERP"})
        receiver.secret = made["createWebhookEndpoint"]["secret"]
        yield live, receiver, made["createWebhookEndpoint"]["endpoint"]["id"]


async def test_failed_deliveries_are_shown_and_sent_again_and_a_disabled_endpoint_enabled(
    page: Page, failing: tuple[Live, Receiver, str]
) -> None:
    live, receiver, endpoint_id = failing
    await settled_orders(live.gql, 1)
    sent = await journal(live.svc.settings.database_url)
    await stored_for(live.gql, endpoint_id, len(sent), status=["FAILED"])

    await page.open(f"{live.url}/dashboard#/webhooks")
    row = f'tr[data-endpoint-id="{endpoint_id}"]'
    await page.until(f"return document.querySelector('{row}')", what="the endpoint")
    cells = await page.texts(f"{row} td")
    assert cells[:3] == [receiver.url, "every event", "the ERP"]
    assert cells[3].startswith("DISABLED no delivery succeeded since")  # three seconds of failures

    await page.click(f"{row} a")
    statuses = await page.until(
        f"const s = {ROWS.removeprefix('return ')}; return s.length && s", what="deliveries"
    )
    assert set(statuses) == {"FAILED"} and len(statuses) == len(sent)
    first = f'tr[data-event-id="evt_{sent[0]["data"]["sagaId"]}_1"] td'
    shown = await page.texts(first)
    assert (shown[3], shown[5], shown[7]) == ("FAILED", "500", "answered 500")
    assert int(shown[4]) >= 1  # attempts
    await page.run(CHOOSE_STATUS, "PENDING")
    await page.until(
        "return document.querySelectorAll('#deliveries tr').length === 0", what="no pending ones"
    )
    await page.run(CHOOSE_STATUS, "")
    await page.until(
        f"return {ROWS.removeprefix('return ')}.length === {len(sent)}", what="every delivery again"
    )

    receiver.answer = 200
    await page.click(f'{row} button[data-action="enable"]')
    await page.until(
        "return document.getElementById('webhooks-answer').innerText === 'Enabled.'", what="enabled"
    )
    [endpoint] = (await live.gql(ENDPOINTS))["webhookEndpoints"]
    assert endpoint["enabled"] is True
    await page.click("#redeliver-failed")
    answer = await page.until(
        "const a = document.getElementById('webhooks-answer').innerText; "
        "return a.endsWith('sent again.') && a",
        what="the redelivery's answer",
    )
    assert answer == f"{len(sent)} sent again."
    await receiver.wait_for(ids_of(sent))
    receiver.check_order()
    # Received, and then recorded by the relay: the page read afresh shows what is stored.
    await stored_for(live.gql, endpoint_id, len(sent), status=["SUCCEEDED"])
    await page.run("window.dispatchEvent(new HashChangeEvent('hashchange'))")
    await page.until(f"return {ROWS.removeprefix('return ')}.every(s => s === 'SUCCEEDED')", what="delivered")
