"""Managing webhook endpoints over real HTTP: URLs that resolve to private addresses refused with
authentication on (and when a delivery is due), loopback allowed in development mode, every address
allowed with --allow-private-webhook-urls; bad URLs and event names refused, changing nothing; the
secret answered once, never readable nor logged, and rotated; endpoints changed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.service import Service
from api.settings import Settings
from persistence.connection import EngineWriter
from persistence.database import make_engine
from persistence.webhooks import WebhookStore
from tests.api.server import PLACE, TLS, GraphQLClient, graphql_client, place, stock
from tests.api.test_auth_http import stock as stock_as_operator
from tests.api.test_webhooks_http import CREATE, ENDPOINTS, UPDATE, ids_of, journal, stored_for
from tests.api.tokens import ADMIN, AUTH, Caller, served
from tests.integration.support import FAST
from tests.receiver import Receiver

REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://224.0.0.1/hook",
    "http://100.64.0.1/hook",
    "http://240.0.0.1/hook",
]
BAD_URLS = [
    "ftp://example.com/hook",
    "example.com/hook",
    "http:///hook",
    "http://user:password@example.com/hook",
    "http://example.com:99999/hook",
    "javascript:alert(1)",
    "http://example.com/" + "x" * 2000,
]


async def create(admin: Caller, **input: Any) -> dict[str, Any]:
    return (await admin.data(CREATE, input=input))["createWebhookEndpoint"]  # type: ignore[no-any-return]


async def test_urls_that_reach_private_addresses_are_refused_with_authentication_on(sqlite_url: str) -> None:
    async with served(Settings(database_url=sqlite_url, auth=AUTH)) as server:
        admin = Caller(server.http, ADMIN)
        for url in REFUSED:
            payload = await create(admin, url=url)
            assert payload["endpoint"] is None, url
            assert payload["secret"] is None, url
            [error] = payload["userErrors"]
            assert (error["code"], error["field"]) == ("URL_NOT_ALLOWED", "url"), url
            assert "not a public address" in error["message"], url
        assert (await admin.data(ENDPOINTS))["webhookEndpoints"] == []
        public = await create(admin, url="https://93.184.215.14/hook")
        assert public["userErrors"] == []
        moved = await admin.data(UPDATE, input={"id": public["endpoint"]["id"], "url": "http://10.0.0.1/"})
        assert moved["updateWebhookEndpoint"]["userErrors"] == [{"code": "URL_NOT_ALLOWED", "field": "url"}]
        [kept] = (await admin.data(ENDPOINTS))["webhookEndpoints"]
        assert kept["url"] == "https://93.184.215.14/hook"


async def test_private_addresses_are_allowed_when_the_service_allows_them(sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, auth=AUTH, allow_private_webhook_urls=True)
    async with served(settings) as server:
        admin = Caller(server.http, ADMIN)
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[fd00::1]/hook"):
            assert (await create(admin, url=url))["userErrors"] == [], url


async def test_development_mode_allows_loopback_only(sqlite_url: str) -> None:
    async with graphql_client(_development(sqlite_url)) as gql:
        for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook"):
            payload = (await gql(CREATE, input={"url": url}))["createWebhookEndpoint"]
            assert payload["userErrors"] == [], url
        for url in ("http://10.1.2.3/hook", "http://169.254.169.254/", "http://[::ffff:192.168.1.1]/"):
            payload = (await gql(CREATE, input={"url": url}))["createWebhookEndpoint"]
            assert [e["code"] for e in payload["userErrors"]] == ["URL_NOT_ALLOWED"], url


async def test_bad_urls_and_event_names_are_refused_and_change_nothing(sqlite_url: str) -> None:
    async with graphql_client(_development(sqlite_url)) as gql:
        for url in BAD_URLS:
            payload = (await gql(CREATE, input={"url": url}))["createWebhookEndpoint"]
            assert payload["endpoint"] is None, url
            assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("INVALID_URL", "url")], url
        url = "http://127.0.0.1:9/hook"
        for events, code in [(["SagaStarted", "OrderShipped"], "UNKNOWN_EVENT_TYPE"), ([], "REQUIRED")]:
            payload = (await gql(CREATE, input={"url": url, "events": events}))["createWebhookEndpoint"]
            assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, "events")]
        long = (await gql(CREATE, input={"url": url, "description": "x" * 501}))["createWebhookEndpoint"]
        assert [e["code"] for e in long["userErrors"]] == ["TOO_LONG"]
        assert (await gql(ENDPOINTS))["webhookEndpoints"] == []

        made = (await gql(CREATE, input={"url": url, "events": ["SagaStarted"]}))["createWebhookEndpoint"]
        endpoint_id = made["endpoint"]["id"]
        refused = await gql(UPDATE, input={"id": endpoint_id, "events": ["Nope"], "url": "ftp://x"})
        assert {e["code"] for e in refused["updateWebhookEndpoint"]["userErrors"]} == {
            "UNKNOWN_EVENT_TYPE",
            "INVALID_URL",
        }
        unknown = await gql(UPDATE, input={"id": "none", "enabled": False})
        assert unknown["updateWebhookEndpoint"]["userErrors"] == [
            {"code": "UNKNOWN_WEBHOOK_ENDPOINT", "field": "id"}
        ]
        [kept] = (await gql(ENDPOINTS))["webhookEndpoints"]
        assert (kept["url"], kept["events"], kept["enabled"]) == (url, ["SagaStarted"], True)


async def test_an_endpoint_is_changed_field_by_field(sqlite_url: str) -> None:
    async with graphql_client(_development(sqlite_url)) as gql:
        made = (
            await gql(
                CREATE, input={"url": "http://127.0.0.1:9/a", "events": ["SagaStarted"], "description": "d"}
            )
        )["createWebhookEndpoint"]
        endpoint_id = made["endpoint"]["id"]
        await gql(UPDATE, input={"id": endpoint_id, "url": "http://127.0.0.1:9/b"})
        [endpoint] = (await gql(ENDPOINTS))["webhookEndpoints"]
        assert (endpoint["url"], endpoint["events"], endpoint["description"]) == (
            "http://127.0.0.1:9/b",
            ["SagaStarted"],
            "d",
        )
        changed = await gql(
            UPDATE, input={"id": endpoint_id, "events": None, "description": None, "enabled": False}
        )
        assert changed["updateWebhookEndpoint"]["secret"] is None  # not rotated, not shown
        [endpoint] = (await gql(ENDPOINTS))["webhookEndpoints"]
        assert (endpoint["events"], endpoint["description"], endpoint["enabled"]) == (None, None, False)
        assert endpoint["disabledReason"] == "disabled by an admin"


async def test_the_secret_is_answered_once_never_read_back_nor_logged_and_rotates(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # what `ordersaga serve` logs (api/observability/logs.py)
    receiver = Receiver()
    async with receiver.running(), graphql_client(_development(sqlite_url)) as gql:
        await stock(gql)
        made = (await gql(CREATE, input={"url": receiver.url}))["createWebhookEndpoint"]
        first_secret = made["secret"]
        receiver.secret = first_secret
        endpoint_id = made["endpoint"]["id"]
        fields = await gql('{ __type(name: "WebhookEndpoint") { fields { name } } }')
        assert "secret" not in {f["name"] for f in fields["__type"]["fields"]}
        placed = await place(gql, 1)
        await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
        await receiver.wait_for(ids_of(await journal(sqlite_url)))

        rotated = (await gql(UPDATE, input={"id": endpoint_id, "rotateSecret": True}))[
            "updateWebhookEndpoint"
        ]
        second_secret = rotated["secret"]
        assert second_secret.startswith("whsec_") and second_secret != first_secret
        receiver.secret = second_secret
        await place(gql, 1)
        sent = await journal(sqlite_url)
        await receiver.wait_for(ids_of(sent))
        receiver.check_order()  # every delivery verified, with the secret of its time
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged  # the service did log (so the next check means something)
    for secret in (first_secret, second_secret):
        assert secret not in logged
        assert secret.removeprefix("whsec_") not in logged


async def test_a_url_that_resolves_to_a_private_address_by_delivery_time_is_not_sent_to(
    sqlite_url: str,
) -> None:
    """What a name resolves to can change after it was registered: each round checks again."""
    receiver = Receiver()
    settings = Settings(database_url=sqlite_url, auth=AUTH, policy=FAST)
    async with (
        receiver.running(),
        served(settings) as server,
        httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=10, verify=TLS) as http,
    ):
        # As if a public name had come to resolve to loopback: stored as the GraphQL check let it.
        engine = make_engine(sqlite_url)
        try:
            store = WebhookStore(engine, EngineWriter(engine))
            endpoint = await store.create(receiver.url, None, None, "whsec_" + "A" * 44, datetime.now(UTC))
        finally:
            await engine.dispose()
        server.svc.webhooks.changed()
        await stock_as_operator(http)
        admin = GraphQLClient(http)
        await admin(PLACE, input={"customerId": "c", "lines": [{"sku": "TEA", "quantity": 1}]})
        stored = await stored_for(admin, endpoint.id, 1)
        assert stored[-1]["error"].startswith("not sent: 127.0.0.1 resolves to 127.0.0.1")
        assert stored[-1]["responseCode"] is None
        assert not receiver.arrived.is_set()


def _development(url: str) -> Service:
    return Service(Settings(database_url=url, policy=FAST))
