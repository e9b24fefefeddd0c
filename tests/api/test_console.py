"""GraphiQL and the operator console in a real headless Chromium that can reach loopback only: the
pages load everything from the server, run queries, find sagas, show a saga's whole story (a remote
warehouse's shipment too), act on it, and chart what happened. Each test leaves screenshots in its
temporary directory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium.webdriver.common.keys import Keys

from api.settings import Settings
from domain.model.saga import SagaPolicy
from tests.api.browser import Page
from tests.api.live import Live, serve_live
from tests.api.server import stage
from tests.api.tokens import ADMIN, AUTH, token
from tests.warehouse import ACCEPTED, WarehouseStub

# Page expressions, for `return ...` in the page's scripts.
JOURNAL_TYPES = "[...document.querySelectorAll('#journal tbody tr')].map(r => r.dataset.type)"
ANSWER = "document.getElementById('saga-answer')"
COMPLETED_JOURNAL = [
    "SagaStarted",
    "StepStarted",
    "StepSucceeded",
    "StepStarted",
    "StepSucceeded",
    "StepStarted",
    "StepSucceeded",
]
# Records what the page sends: each request's headers, and each WebSocket message.
RECORD_REQUESTS = """
window.sentHeaders = [];
window.sentMessages = [];
const realFetch = window.fetch.bind(window);
window.fetch = (url, init) => {
  window.sentHeaders.push(Object.fromEntries(new Headers(init?.headers ?? {})));
  return realFetch(url, init);
};
const realSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.sentMessages.push(JSON.parse(data));
  return realSend.call(this, data);
};
"""


def with_faults(tmp_path: Path, **more: Any) -> Settings:
    """Fault injection on and quick retries, so a saga can be parked in a moment."""
    policy = SagaPolicy(retry_backoff=timedelta(milliseconds=20))
    database = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    return Settings(database, policy=policy, fault_injection=True, **more)


@pytest.fixture
async def live_with_faults(tmp_path: Path) -> AsyncIterator[Live]:
    async with serve_live(with_faults(tmp_path)) as served:
        yield served


@pytest.fixture
async def live_with_auth(tmp_path: Path) -> AsyncIterator[Live]:
    """Authentication on; the test itself calls as an admin."""
    async with serve_live(with_faults(tmp_path, auth=AUTH), headers=ADMIN) as served:
        yield served


async def parked_saga(live: Live) -> str:
    await stage(live.gql, "SHIPMENT", failNext=3)
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    return saga_id


async def completed_and_failed(live: Live) -> tuple[str, str]:
    """A saga that completed and one that failed short of stock (and compensated)."""
    done, short = await live.place(1), await live.place(9)
    await live.gql.wait_for_saga(done, "COMPLETED")
    await live.gql.wait_for_saga(short, "FAILED")
    return done, short


async def run_in_graphiql(page: Page) -> None:
    run = "const b = document.querySelector('.graphiql-execute-button'); if (b) b.click(); return Boolean(b)"
    await page.until(run, what="GraphiQL's run button")


async def assert_only_loopback(page: Page, live: Live) -> None:
    loaded = await page.loaded_from()
    assert loaded and all(url.startswith(f"{live.url}/") for url in loaded), loaded


# ---------------------------------------------------------------------------------------------- GraphiQL


async def test_graphiql_loads_from_the_server_and_runs_a_query(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    query = "{ sagas(first: 1) { edges { node { id status } } } }"
    await page.open(f"{live.url}/graphql?q={quote(query)}")
    await run_in_graphiql(page)
    result = "(document.querySelector('.result-window')?.innerText ?? '')"
    shown = await page.until(f"return {result}.includes('COMPLETED') && {result}", what="the query's result")
    assert saga_id in shown
    # The explorer plugin lists the schema's queries.
    await page.click("[aria-label='Show GraphiQL Explorer']")
    explorer = "return document.querySelector('.graphiql-plugin')?.innerText ?? ''"
    assert "sagaActivity" in await page.until(explorer, what="the explorer")
    await page.screenshot("graphiql")
    await assert_only_loopback(page, live)


async def test_graphiql_sends_the_header_editors_bearer_token_over_http_and_websocket(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    await page.before_every_document(RECORD_REQUESTS)
    headers = json.dumps({"Authorization": "Bearer token-1"})
    subscription = "subscription { sagaFeed { sequence } }"
    await page.open(f"{live.url}/graphql?q={quote(subscription)}&headers={quote(headers)}")
    await run_in_graphiql(page)
    init = "return window.sentMessages.find(m => m.type === 'connection_init')"
    assert (await page.until(init, what="a connection_init"))["payload"] == {
        "Authorization": "Bearer token-1"
    }
    sent = await page.run("return window.sentHeaders")
    # The schema's introspection went over HTTP with the header.
    assert sent and all(h.get("authorization") == "Bearer token-1" for h in sent), sent
    await page.screenshot("graphiql-headers")


# ------------------------------------------------------------------------------------------- the console


async def test_the_console_opened_after_sagas_finished_lists_them(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    done, short = await completed_and_failed(live)

    await page.open(f"{live.url}/dashboard/")
    rows = "[...document.querySelectorAll('#sagas tr')].map(r => [r.dataset.sagaId, r.dataset.status])"
    assert await page.until(f"return {rows}.length === 2 && {rows}", what="both sagas") == [
        [short, "FAILED"],
        [done, "COMPLETED"],
    ]
    # Full ids, each a link to the saga's page.
    assert await page.texts("#sagas .saga-id") == [short, done]
    await page.screenshot("console")
    await assert_only_loopback(page, live)


async def test_the_console_pages_through_many_sagas_without_repeating_one(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    placed = await asyncio.gather(*(live.place(9) for _ in range(55)))  # shortages: over at once
    await live.gql.wait_for_saga(placed[-1], "FAILED")
    await page.open(f"{live.url}/dashboard/")
    rows = "document.querySelectorAll('#sagas tr').length"
    assert await page.until(f"return {rows} === 50", what="a first page of 50")
    await page.click("#more")
    assert await page.until(f"return {rows} === 55", what="the 5 older sagas")
    ids = await page.run("return [...document.querySelectorAll('#sagas tr')].map(r => r.dataset.sagaId)")
    assert sorted(ids) == sorted(placed)
    assert await page.run("return document.getElementById('more').hidden")


async def test_the_list_filters_by_start_time_and_customer(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await page.open(f"{live.url}/dashboard/")
    listed = "[...document.querySelectorAll('#sagas tr')].map(r => r.dataset.sagaId).join()"
    await page.until(f"return {listed} === arguments[0]", saga_id, what="the saga")

    # Started from an hour ahead (in the browser's local time, as the field takes it): none.
    local = "const d = new Date(Date.now() + 3600e3); return new Date(d - d.getTimezoneOffset() * 6e4)"
    ahead = await page.run(f"{local}.toISOString().slice(0, 16)")
    await page.run("document.querySelector('#filter [name=within]').value = 'between'")
    await page.run("document.querySelector('#filter [name=after]').value = arguments[0]", ahead)
    await page.click("#filter button[type=submit]")
    empty = "return document.getElementById('sagas-state').dataset.state === 'empty'"
    assert await page.until(empty, what="no saga started in the future")
    await page.click("#filter button[type=reset]")
    await page.until(f"return {listed} === arguments[0]", saga_id, what="the saga again")

    for customer, shown in (("nobody", ""), ("customer-1", saga_id)):
        await page.run("document.getElementById('search-input').value = arguments[0]", customer)
        await page.click("#search button")
        await page.until(f"return {listed} === arguments[0]", shown, what=f"the sagas of {customer}")


async def test_search_by_a_full_saga_id_or_order_id_opens_the_sagas_page(
    page: Page, live_on_sqlite: Live
) -> None:
    live = live_on_sqlite
    saga_id = await live.place(1)
    saga = await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await live.place(2)
    for wanted in (saga_id, saga["order"]["id"]):
        await page.open(f"{live.url}/dashboard/")
        await page.run("document.getElementById('search-input').value = arguments[0]", wanted)
        await page.click("#search button")
        assert await page.until("return location.hash", what="the saga's page") == f"#/sagas/{saga_id}"
        title = "return document.getElementById('saga-title').innerText"
        assert await page.until(f"{title} === arguments[0]", f"Saga {saga_id}", what="the saga's title")
    unknown = "00000000-0000-0000-0000-000000000000"
    await page.run("document.getElementById('search-input').value = arguments[0]", unknown)
    await page.click("#search button")
    said = "return document.getElementById('search-result').innerText"
    assert "No saga or order has the id" in await page.until(said, what="that nothing has the id")


async def test_the_saga_page_by_its_address_tells_the_whole_story(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    saga_id = await live.place(2)
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")

    assert await page.until(f"return {JOURNAL_TYPES}.length === 7 && {JOURNAL_TYPES}", what="7 events") == (
        COMPLETED_JOURNAL
    )
    assert await page.texts("#steps tbody th") == [
        "Create order",
        "Reserve stock",
        "Confirm order",
        "Create shipment",
    ]
    assert [row.split("\t")[:3] for row in await page.texts("#steps tbody tr")] == [
        [name, "Succeeded", "1"]
        for name in ("Create order", "Reserve stock", "Confirm order", "Create shipment")
    ]
    assert await page.texts("#order-lines tbody tr") == ["TEA\t2"]
    # One shipment per warehouse, each with its status and picks.
    shipments = await page.texts("#shipments .shipment > p")
    assert shipments and all(text.startswith("Shipment from W") and "CREATED" in text for text in shipments)
    assert len(await page.texts("#shipments tbody tr")) >= 1
    # Its shipment is not dispatched: the order may still be cancelled.
    assert await page.run(
        "return [...document.querySelectorAll('#saga-actions button')].map(b => b.dataset.action)"
    ) == ["cancel"]
    await page.screenshot("saga-page")
    await assert_only_loopback(page, live)


async def test_a_refused_shipment_shows_when_it_was_requested(page: Page, live_with_faults: Live) -> None:
    live = live_with_faults
    await stage(live.gql, "SHIPMENT", rejectedWarehouses=["W1"])
    saga_id = await live.place(1)
    await live.gql.wait_for_saga(saga_id, "FAILED")
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    shown = "return document.querySelector('#shipments .shipment > p')?.innerText"
    said = await page.until(shown, what="the shipment")
    # The warehouse never created it: its time is when it was requested.
    assert said.startswith("Shipment from W1 ") and " REJECTED requested " in said, said
    assert "created" not in said, said


async def test_a_shipment_a_remote_warehouse_accepted_shows_since_when_it_is_awaited(
    page: Page, tmp_path: Path
) -> None:
    stub = WarehouseStub(script={"W1": [ACCEPTED]})
    settings = Settings(
        f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}",
        warehouse_service_url=stub.url,
        warehouse_service_secret=stub.secret,
    )
    async with stub.running(), serve_live(settings) as live:
        saga_id = await live.place(1)
        await stub.wait_for("CreateShipment", 1)
        await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
        awaiting = "return document.querySelector('#shipments .awaiting')?.innerText"
        said = await page.until(awaiting, what="the shipment awaited")
        assert said.startswith("Awaiting the warehouse since "), said
        await page.screenshot("awaiting-the-warehouse")

        reported = await live.gql(
            """mutation ($id: String!) {
              reportShipmentOutcome(input: {commandId: $id, outcome: CREATED, reference: "WMS-9"}) {
                userErrors { code } } }""",
            id=stub.of_type("CreateShipment")[0].id,
        )
        assert reported["reportShipmentOutcome"]["userErrors"] == []
        reference = "return document.querySelector('#shipments .reference')?.innerText"
        assert await page.until(reference, what="the warehouse's reference") == "WMS-9"
        assert await page.run("return document.querySelector('#shipments .awaiting')") is None

        await page.open(f"{live.url}/dashboard/")
        rows = "return [...document.querySelectorAll('#warehouse-command-rows tr')].map(r => r.innerText)"
        (row,) = await page.until(rows, what="the warehouse's commands")
        assert row.split("\t")[:4] == ["W1", "CreateShipment", "1", "1 ACCEPTED"]
        assert "HTTP 202: ACCEPTED" in row
        await page.run("document.getElementById('warehouse-commands').scrollIntoView()")
        await page.screenshot("warehouse-commands")


# What the page does when the feed says its saga moved.
REDRAW = "import('/dashboard/saga.js').then((saga) => saga.refreshIfShown())"


async def test_the_retry_button_moves_a_parked_saga_on_by_keyboard(
    page: Page, live_with_faults: Live
) -> None:
    live = live_with_faults
    saga_id = await parked_saga(live)
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    buttons = "[...document.querySelectorAll('#saga-actions button')].map(b => b.dataset.action)"
    actions = await page.until(f"return {buttons}.length && {buttons}", what="the actions")
    assert actions == ["retry", "abort", "cancel"]

    # By keyboard: the button takes the focus, and keeps it when the page is drawn again (as when the
    # feed says the saga moved); Enter asks, Escape keeps the saga as it is.
    await page.until_connection("live")  # the feed's first reading of the page is done
    retry = "document.querySelector('#saga-actions [data-action=retry]')"
    await page.run(f"{retry}.dataset.drawing = 'first'; {retry}.focus()")
    await page.run(REDRAW)
    await page.until(f"return {retry} && !{retry}.dataset.drawing", what="the actions drawn again")
    assert await page.run("return document.activeElement.dataset.action") == "retry"
    await page.press(Keys.ENTER)
    dialog_open = "return document.getElementById('action-dialog').open"
    assert await page.until(dialog_open, what="a question before retrying")
    await page.screenshot("retry-confirm")
    # Drawn again while it asks: Escape gives the focus back to the button, as drawn now.
    await page.run(f"{retry}.dataset.drawing = 'second'; {REDRAW}")
    await page.until(f"return {retry} && !{retry}.dataset.drawing", what="the actions drawn again")
    await page.press(Keys.ESCAPE)
    assert not await page.run(dialog_open)
    assert await page.run("return document.activeElement.dataset.action") == "retry"
    assert (await live.gql.wait_for_saga(saga_id, "NEEDS_ATTENTION"))["status"] == "NEEDS_ATTENTION"
    assert await page.run(f"return {ANSWER}.innerText") == ""

    # Enter again, and Enter on the confirmation, which has the focus.
    await page.run(f"{retry}.focus()")
    await page.press(Keys.ENTER)
    await page.until(dialog_open, what="a question before retrying")
    assert await page.run("return document.activeElement.id") == "action-confirm"
    await page.press(Keys.ENTER)
    assert await page.until(f"return {ANSWER}.dataset.outcome === 'done'", what="the retry's answer")
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    status = "return document.getElementById('saga-page').dataset.status"
    assert await page.until(f"{status} === 'COMPLETED'", what="the saga COMPLETED on its page")
    assert "SagaRetried" in await page.run(f"return {JOURNAL_TYPES}")
    assert await page.texts("#journal tr.intervention td:last-child") == [
        "an operator retried it (developer)"
    ]
    await page.screenshot("retried")


async def test_a_refused_action_shows_its_code(page: Page, live_with_faults: Live) -> None:
    live = live_with_faults
    # A shortage whose compensation keeps failing is parked while compensating: aborting it is
    # refused (it is retried instead).
    await stage(live.gql, "ORDERS", failureRate=1)
    saga_id = await live.place(9)
    await live.gql.wait_for_saga(saga_id, "NEEDS_ATTENTION")
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    await page.until("return document.querySelector('#saga-actions [data-action=abort]')", what="abort")
    await page.click("#saga-actions [data-action=abort]")
    await page.run("document.getElementById('action-reason').value = 'carrier gone'")
    await page.click("#action-confirm")
    refused = f"return {ANSWER}.dataset.outcome === 'refused' && {ANSWER}.innerText"
    said = await page.until(refused, what="a refusal")
    assert said.startswith("Refused: SAGA_ALREADY_COMPENSATING"), said
    assert (await live.gql.wait_for_saga(saga_id, "NEEDS_ATTENTION"))["status"] == "NEEDS_ATTENTION"
    await page.screenshot("refused")


async def test_the_charts_have_data(page: Page, live_on_sqlite: Live) -> None:
    live = live_on_sqlite
    done, short = await completed_and_failed(live)
    await page.open(f"{live.url}/dashboard/")
    total = "return Number(document.getElementById('activity-chart').dataset.total)"
    assert await page.until(f"{total} === 3", what="1 completed, 1 failed and 1 compensated charted")
    summary = await page.text("#activity-summary")
    assert summary.endswith("1 completed, 1 failed, 1 compensated"), summary
    assert await page.run("return document.querySelectorAll('#activity-chart canvas').length") == 1
    assert await page.run("return Number(document.getElementById('durations-chart').dataset.steps)") >= 4
    # The built-in warehouse sends no commands: no table of them.
    assert await page.run("return document.getElementById('warehouse-commands').hidden")
    await page.screenshot("charts")


async def test_the_console_asks_for_a_token_when_the_server_wants_one(
    page: Page, live_on_sqlite: Live
) -> None:
    # This server stands in for one with authentication: without a bearer token, HTTP answers
    # UNAUTHENTICATED.
    await page.before_every_document(
        RECORD_REQUESTS
        + """
        const serverFetch = window.fetch;
        window.fetch = (url, init) => {
          if (new Headers(init?.headers ?? {}).get("authorization") === "Bearer s3cret") {
            return serverFetch(url, init);
          }
          const refusal = {data: null, errors: [{message: "sign in", extensions: {code: "UNAUTHENTICATED"}}]};
          return Promise.resolve(new Response(JSON.stringify(refusal),
            {headers: {"content-type": "application/json"}}));
        };
        """
    )
    await page.open(f"{live_on_sqlite.url}/dashboard/")
    asked = "return document.getElementById('token-dialog').open"
    assert await page.until(asked, what="the token dialog")
    await page.screenshot("token")
    await page.run("document.querySelector('#token-dialog input').value = 's3cret'")
    await page.click("#token-dialog button[value=save]")
    shown = "return document.getElementById('sagas-state').dataset.state === 'empty'"
    assert await page.until(shown, what="the list read with the token")
    assert await page.run("return sessionStorage.getItem('ordersaga.token')") == "s3cret"
    # A WebSocket opened from now on carries it in connection_init.
    await page.open(f"{live_on_sqlite.url}/dashboard/")
    init = "return window.sentMessages.find(m => m.type === 'connection_init')"
    assert (await page.until(init, what="a connection_init"))["payload"] == {"Authorization": "Bearer s3cret"}


async def test_a_subscription_refused_as_unauthenticated_asks_for_a_token(
    page: Page, live_on_sqlite: Live
) -> None:
    # As a server with authentication does: a subscription from a socket whose connection_init
    # carried no token is answered with an UNAUTHENTICATED error.
    await page.before_every_document(
        RECORD_REQUESTS
        + """
        const passOn = WebSocket.prototype.send;
        WebSocket.prototype.send = function (data) {
          const message = JSON.parse(data);
          if (message.type === "connection_init") this.token = message.payload?.Authorization;
          if (message.type === "subscribe" && !this.token) {
            const refusal = [{message: "no token", extensions: {code: "UNAUTHENTICATED"}}];
            const answer = {id: message.id, type: "error", payload: refusal};
            setTimeout(() => this.dispatchEvent(new MessageEvent("message", {data: JSON.stringify(answer)})));
            return;
          }
          return passOn.call(this, data);
        };
        """
    )
    await page.open(f"{live_on_sqlite.url}/dashboard/")
    asked = "return document.getElementById('token-dialog').open"
    assert await page.until(asked, what="the token dialog")
    assert await page.text("#token-why") == "no token"
    await page.run("document.querySelector('#token-dialog input').value = 't0ken'")
    await page.click("#token-dialog button[value=save]")
    await page.until_connection("live")
    inits = await page.run("return window.sentMessages.filter(m => m.type === 'connection_init')")
    assert inits[-1]["payload"] == {"Authorization": "Bearer t0ken"}


async def test_with_authentication_an_operator_signs_in_and_retries_on_record(
    page: Page, live_with_auth: Live
) -> None:
    live = live_with_auth
    await page.before_every_document(RECORD_REQUESTS)
    saga_id = await parked_saga(live)
    await page.open(f"{live.url}/dashboard/#/sagas/{saga_id}")
    assert await page.until("return document.getElementById('token-dialog').open", what="a sign-in")
    signed = token("ops-7", "operator")
    await page.run("document.querySelector('#token-dialog input').value = arguments[0]", signed)
    await page.click("#token-dialog button[value=save]")

    await page.until("return document.querySelector('#saga-actions [data-action=retry]')", what="retry")
    await page.click("#saga-actions [data-action=retry]")
    await page.click("#action-confirm")
    assert await page.until(f"return {ANSWER}.dataset.outcome === 'done'", what="the retry's answer")
    await live.gql.wait_for_saga(saga_id, "COMPLETED")
    who = "[...document.querySelectorAll('#journal tr.intervention td:last-child')].map(e => e.innerText)"
    assert await page.until(f"return {who}.length && {who}", what="who retried it") == [
        "an operator retried it (ops-7)"
    ]
    # The page follows the saga to its end over a socket that carries the token.
    status = "return document.getElementById('saga-page').dataset.status"
    assert await page.until(f"{status} === 'COMPLETED'", what="the saga COMPLETED on its page")
    await page.until_connection("live")
    inits = await page.run("return window.sentMessages.filter(m => m.type === 'connection_init')")
    assert inits[-1]["payload"] == {"Authorization": f"Bearer {signed}"}
    await page.screenshot("signed-in")
