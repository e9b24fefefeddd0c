"""The README's commands are the ones CI runs, its GraphQL examples fit the schema, and its warehouse
service works."""

from __future__ import annotations

import json
import re
import runpy
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from graphql import build_schema, parse, validate
from standardwebhooks.webhooks import Webhook

from api.access.auth import Role
from api.access.rules import RULES
from api.graphql.schema import schema
from api.outbound.signing import new_secret
from api.service import Service
from api.settings import Settings
from tests.api.server import TLS, graphql_client, place, serve_app, stock

ROOT = Path(__file__).parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_the_readme_opens_with_the_serve_and_the_test_command() -> None:
    serve, test = readme_commands()[:2]
    assert "pip install" in serve and serve.endswith("ordersaga serve --demo")
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = readme_commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_graphql_examples_are_valid_against_the_schema() -> None:
    served = build_schema(schema.as_str())
    examples = re.findall(r"```graphql\n(.+?)\n```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(examples) >= 5
    for example in examples:
        assert validate(served, parse(example)) == [], example


def test_the_readme_roles_table_is_the_rules_table() -> None:
    """Every operation of `api/access/rules.py` has a row in the README's table, with its rule's roles."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| operations | customer | operator | admin |") :].split("\n\n")[0]
    documented: dict[str, frozenset[Role]] = {}
    for row in table.splitlines()[2:]:
        names, *cells = (cell.strip() for cell in row.strip("|").split("|"))
        roles = frozenset(role for role, cell in zip(Role, cells, strict=True) if cell)
        documented.update((name, roles) for name in re.findall(r"`(\w+)`", names))
    rules = {field: roles for fields in RULES.values() for field, roles in fields.items()}
    assert {field: documented.get(field) for field in rules} == rules


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_several_processes_section_says_rate_limits_count_per_process_without_a_shared_store() -> None:
    section = " ".join(readme_section("Several processes over one PostgreSQL").split())
    assert "admit N times the limit" in section and "--rate-limit-storage redis://" in section


async def test_the_readmes_warehouse_service_creates_a_shipment_and_cancels_it(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's stub, as a reader would save it beside its secret file, behind a service that
    sends it every warehouse's commands."""
    (stub,) = re.findall(r"```python\n(.+?)\n```", readme_section("Connecting a warehouse"), re.DOTALL)
    secret = new_secret()
    (tmp_path / "warehouse-secret").write_text(f"{secret}\n")
    (tmp_path / "warehouse.py").write_text(stub)
    monkeypatch.chdir(tmp_path)
    warehouse = runpy.run_path(str(tmp_path / "warehouse.py"))

    async with serve_app(warehouse["app"]) as url:
        settings = Settings(
            sqlite_url, warehouse_service_url=f"{url}/commands", warehouse_service_secret=secret
        )
        async with graphql_client(Service(settings)) as gql:
            await stock(gql)
            placed = await place(gql, 1)
            saga = await gql.wait_for_saga(placed["saga"]["id"], "COMPLETED")
            shipments = "query ($id: ID!) { order(id: $id) { shipments { status reference } } }"
            order_id = saga["order"]["id"]
            assert (await gql(shipments, id=order_id))["order"]["shipments"] == [
                {"status": "CREATED", "reference": "WMS-1"}
            ]
            assert warehouse["shipments"] != {}

            cancel = "mutation ($id: ID!) { cancelOrder(input: {orderId: $id}) { userErrors { code } } }"
            assert (await gql(cancel, id=order_id))["cancelOrder"]["userErrors"] == []
            await gql.wait_for_saga(placed["saga"]["id"], "FAILED")
            (cancelled,) = (await gql(shipments, id=order_id))["order"]["shipments"]
            assert cancelled["status"] == "CANCELLED" and warehouse["shipments"] == {}
            ids = "query ($id: ID!) { order(id: $id) { shipments { id warehouseCode } } }"
            (shipment,) = (await gql(ids, id=order_id))["order"]["shipments"]

        # The create sent again after its answer was lost, arriving after the cancel: not created.
        code = shipment["warehouseCode"]
        created = {
            "commandId": f"{placed['saga']['id']}:CREATE_SHIPMENT:{code}",
            "type": "CreateShipment",
            "sagaId": placed["saga"]["id"],
            "orderId": order_id,
            "shipmentId": shipment["id"],
            "warehouseCode": code,
            "picks": [],
        }
        late = json.dumps(created).encode()
        now = datetime.now(UTC)
        headers = {
            "webhook-id": created["commandId"],
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(created["commandId"], now, late.decode()),
        }
        async with httpx.AsyncClient(verify=TLS) as client:
            answer = (await client.post(f"{url}/commands", content=late, headers=headers)).json()
        assert answer["status"] == "REJECTED" and warehouse["shipments"] == {}
