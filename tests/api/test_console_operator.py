"""The console as an operator used to Temporal's Web UI uses it, in a real headless Chromium: bulk
retries and aborts with a count to confirm, progress and a result per saga; the running filter and
relative time ranges; cancelling a completed order; a saga's history as JSON; the reserved stock
after a release; charts whose series stay apart; and the dark scheme. Each test leaves screenshots
in its temporary directory, in light and dark."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.browser import Page
from tests.api.live import Live, serve_live
from tests.api.server import stage
from tests.api.test_console import (
    COMPLETED_JOURNAL,
    JOURNAL_TYPES,
    completed_and_failed,
    parked_saga,
    with_faults,
)

LISTED = "[...document.querySelectorAll('#sagas tr')].map(r => r.dataset.sagaId)"
BUTTONS = "[...document.querySelectorAll('#saga-actions button')].map(b => b.dataset.action)"
RESULTS = (
    "[...document.querySelectorAll('#bulk-results tbody tr')].map(r => [r.dataset.sagaId, r.dataset.outcome])"
)


@pytest.fixture
async def live_with_faults(tmp_path: Path) -> AsyncIterator[Live]:
    async with serve_live(with_faults(tmp_path)) as served:
        yield served


async def both_schemes(page: Page, name: str, scroll_to: str = "main") -> None:
    """Screenshots of the page as it stands, light and dark, from the element `scroll_to` down."""
    await page.run("document.querySelector(arguments[0]).scrollIntoView()", scroll_to)
    await page.screenshot(f"{name}-light")
    await page.prefer_color_scheme("dark")
    await page.screenshot(f"{name}-dark")
    await page.prefer_color_scheme("light")


async def apply_filter(page: Page, *statuses: str, within: str = "") -> None:
    await page.run(
        """const form = document.getElementById('filter');
        for (const box of form.querySelectorAll('input[name=status]')) {
          box.checked = arguments[0].includes(box.value);
        }
        form.elements.within.value = arguments[1];
        form.querySelector('button[type=submit]').click();""",
        list(statuses),
        within,
    )


async def test_all_parked_sagas_are_selected_confirmed_by_count_and_retried_with_a_result_each(
    page: Page, live_with_faults: Live
) -> None:
    live = live_with_faults
    parked = [await parked_saga(live) for _ in range(3)]
    done = await live.place(1)
    await live.gql.wait_for_saga(done, "COMPLETED")
    await page.open(f"{live.url}/dashboard/")
    await page.until(f"return {LISTED}.length === 4", what="four sagas")

    await apply_filter(page, "NEEDS_ATTENTION")
    await page.until(f"return {LISTED}.length === 3", what="the parked sagas")
    await page.click("#bulk-all")
    count = "document.getElementById('bulk-count').innerText"
    assert await page.until(f"return {count}.startsWith('3 ') && {count}", what="3 selected") == (
        "3 sagas selected."
    )
    checked = "[...document.querySelectorAll('#sagas .select')].filter(b => b.checked).length"
    assert await page.run(f"return {checked}") == 3

    await page.click("#bulk-retry")
    assert await page.until("return document.getElementById('bulk-dialog').open", what="the confirmation")
    assert (
        await page.text("#bulk-question") == "Retry 3 sagas? Each parked saga's parked step is tried afresh."
    )
    await both_schemes(page, "bulk-confirm", "#bulk")
    await page.click("#bulk-confirm")
    finished = "return document.getElementById('bulk-run').dataset.state === 'done'"
    assert await page.until(finished, what="the run finished")
    assert sorted(await page.run(f"return {RESULTS}")) == sorted([saga_id, "DONE"] for saga_id in parked)
    assert await page.run("const p = document.getElementById('bulk-progress'); return [p.value, p.max]") == [
        3,
        3,
    ]
    assert await page.text("#bulk-said") == "Retry: 3 of 3 sagas handled, 3 DONE"
    for saga_id in parked:
        await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await both_schemes(page, "bulk-done", "#bulk")

    # The selection is empty now; a completed saga selected by its box answers ALREADY.
    assert await page.run(f"return {checked}") == 0
    await apply_filter(page)
    await page.until(f"return {LISTED}.length === 4", what="every saga again")
    await page.click(f"#sagas tr[data-saga-id='{done}'] .select")
    await page.click("#bulk-retry")
    await page.click("#bulk-confirm")
    # The first run's state says "done" until the dialog's close starts the second: wait for its row.
    second = f"return {RESULTS}.length === 1 && {finished.removeprefix('return ')}"
    assert await page.until(second, what="the second run finished")
    assert await page.run(f"return {RESULTS}") == [[done, "ALREADY"]]
    assert "SAGA_NOT_PARKED" in await page.text("#bulk-results tbody td:last-child")


async def test_a_bulk_abort_asks_for_a_reason(page: Page, live_with_faults: Live) -> None:
    live = live_with_faults
    saga_id = await parked_saga(live)
    await page.open(f"{live.url}/dashboard/")
    await page.until(f"return {LISTED}.length === 1", what="the saga")
    await page.click("#select-shown")
    await page.click("#bulk-abort")
    assert await page.until("return document.getElementById('bulk-dialog').open", what="the confirmation")
    # Without a reason the form does not close.
    await page.click("#bulk-confirm")
    assert await page.run("return document.getElementById('bulk-dialog').open")
    await page.run("document.getElementById('bulk-reason').value = 'recalled'")
    await page.click("#bulk-confirm")
    assert await page.until(f"return {RESULTS}.length && {RESULTS}", what="the result") == [[saga_id, "DONE"]]
    saga = await live.gql.wait_for_saga(saga_id, "FAILED")
    assert saga["failureReason"] == "recalled"


async def test_the_running_filter_and_a_relative_time_range(page: Page, live_with_faults: Live) -> None:
    live = live_with_faults
    done, short = await completed_and_failed(live)
    await stage(live.gql, "SHIPMENT", delayMs=60_000)
    moving = await live.place(1)
    await live.gql.wait_for_saga(moving, "SHIPMENT_CREATING")
    await page.open(f"{live.url}/dashboard/")
    await page.until(f"return {LISTED}.length === 3", what="three sagas")

    await apply_filter(page, "RUNNING")
    assert await page.until(f"return {LISTED}.length === 1 && {LISTED}", what="the running saga") == [moving]
    await both_schemes(page, "running", "#filter")
    await apply_filter(page, "RUNNING", "COMPLETED", within="900")
    assert await page.until(f"return {LISTED}.length === 2 && {LISTED}", what="running or completed") == [
        moving,
        done,
    ]
    # Started in the last 15 minutes: every saga here; "between" with a start an hour ahead: none.
    await apply_filter(page, within="900")
    await page.until(f"return {LISTED}.length === 3", what="the last 15 minutes")
    assert await page.run("return document.getElementById('between').hidden")
    assert short in await page.run(f"return {LISTED}")


async def test_a_completed_order_not_dispatched_is_cancelled_from_its_page(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    assert await page.until(f"return {BUTTONS}.length && {BUTTONS}", what="the actions") == ["cancel"]
    await both_schemes(page, "completed-cancellable")
    await page.click("#saga-actions [data-action=cancel]")
    await page.click("#action-confirm")
    saga = await live.gql.wait_for_saga(saga_id, "FAILED")
    assert "CustomerCancelled" in [e["type"] for e in saga["events"]]
    status = "return document.getElementById('saga-page').dataset.status"
    assert await page.until(f"{status} === 'FAILED'", what="the saga FAILED on its page")
    assert await page.run(f"return {BUTTONS}") == []
    assert "CANCELLED" in await page.until(
        "return document.getElementById('shipments')?.innerText", what="the shipments"
    )
    # The intervention's marker is a shape the stylesheet draws, whatever the fonts.
    marker = await page.run(
        "const s = getComputedStyle(document.querySelector('#journal tr.intervention td'), '::before');"
        "return [s.content, s.width, s.transform !== 'none']"
    )
    assert marker[0] == '""' and marker[1] != "0px" and marker[2], marker
    await both_schemes(page, "cancelled", "#journal")


async def test_stock_released_after_a_reservation_no_longer_shows_as_reserved(
    page: Page, live_with_faults: Live
) -> None:
    live = live_with_faults
    await stage(live.gql, "ORDERS", failNext=3)  # the confirmation fails; the cancellation goes through
    saga_id = await live.place(1)
    saga = await live.gql.wait_for_saga(saga_id, "FAILED")
    assert [s["name"] for s in saga["steps"]][-2:] == ["RELEASE_STOCK", "CANCEL_ORDER"]
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    order = "document.querySelector('#saga-body .order')?.innerText ?? ''"
    assert "No stock reserved, no shipment." in await page.until(f"return {order}", what="the order")
    assert await page.run("return document.getElementById('order-picks')") is None
    await both_schemes(page, "released", "#saga-body .order")


async def test_a_sagas_whole_history_downloads_as_json(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    saga_id = await live.place(2)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    await page.until(f"return {JOURNAL_TYPES}.length === 7", what="the journal")
    link = "document.getElementById('saga-download')"
    assert await page.run(f"return {link}.getAttribute('download')") == f"saga-{saga_id}.json"
    history = await page.run(f"return fetch({link}.href).then(r => r.json())")
    saga = history["saga"]
    assert saga["id"] == saga_id and saga["status"] == "COMPLETED"
    assert [e["type"] for e in saga["events"]] == COMPLETED_JOURNAL
    assert [s["name"] for s in saga["steps"]] == [
        "CREATE_ORDER",
        "RESERVE_STOCK",
        "CONFIRM_ORDER",
        "CREATE_SHIPMENT",
    ]
    assert saga["order"]["lines"] == [{"sku": "TEA", "quantity": 2}]
    [shipment] = saga["order"]["shipments"]
    assert (shipment["warehouseCode"], shipment["picks"][0]["quantity"]) == ("W1", 2)


async def test_the_charts_series_differ_by_more_than_colour_and_the_page_follows_the_dark_scheme(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    await completed_and_failed(live)
    await page.prefer_color_scheme("dark")
    await page.open(f"{live.url}/dashboard/")
    total = "return Number(document.getElementById('activity-chart').dataset.total)"
    assert await page.until(f"{total} === 3", what="the activity charted")
    styles = await page.run("return JSON.parse(document.getElementById('activity-chart').dataset.series)")
    assert [s["label"] for s in styles] == ["Completed", "Failed", "Compensated"]
    for key in ("stroke", "dash", "width", "marker"):
        assert len({str(s[key]) for s in styles}) == 3, (key, styles)
    background = "return getComputedStyle(document.documentElement).backgroundColor"
    dark = await page.run(background)
    await page.screenshot("charts-dark")
    # Switched to light while open: the page and the charts follow.
    await page.prefer_color_scheme("light")
    assert await page.run(background) != dark
    drawn = "document.getElementById('activity-chart')"
    redrawn = f"({drawn}.querySelector('canvas') && JSON.parse({drawn}.dataset.series))"
    recoloured = f"return {redrawn} && {redrawn}[0].stroke !== arguments[0] && {redrawn}"
    light = await page.until(recoloured, styles[0]["stroke"], what="the charts drawn in light colours")
    assert [s["stroke"] for s in light] != [s["stroke"] for s in styles]
    await page.screenshot("charts-light")
