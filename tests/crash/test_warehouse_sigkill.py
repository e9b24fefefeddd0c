"""A remote warehouse across real `ordersaga serve` processes killed with SIGKILL, on SQLite and
PostgreSQL: killed while a CreateShipment command is on the wire (the warehouse holds it), the
restarted server sends it again under the same command id, which the warehouse acts on once; killed
while a 202-accepted shipment waits for its report, the restarted server waits on, and the late
report completes the saga. Over PostgreSQL with two processes, the survivor takes over the killed
one's saga and sends its command again; and a report sent to one process completes a saga another
process drives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.server import GraphQLClient
from tests.crash.server_process import ServerProcess, ordersaga_serve
from tests.crash.test_sigkill import FAST_RETRIES
from tests.warehouse import ACCEPTED, WarehouseStub

CATALOG = """
mutation {
  w: registerWarehouse(
    input: {code: "W1", name: "One", sections: [{code: "A", storageCondition: AMBIENT}]}
  ) { userErrors { code } }
  p: registerProduct(input: {sku: "TEA", name: "Tea", storageCondition: AMBIENT}) { userErrors { code } }
  r: receiveStock(input: {sku: "TEA", warehouseCode: "W1", sectionCode: "A", quantity: 10}) {
    userErrors { code } }
}
"""
PLACE = """
mutation { placeOrder(input: {customerId: "c-1", lines: [{sku: "TEA", quantity: 1}]}) { saga { id } } }
"""
SHIPMENTS = "query ($id: ID!) { saga(id: $id) { order { shipments { status reference awaitingSince } } } }"
REPORT = """
mutation ($id: String!) {
  reportShipmentOutcome(input: {commandId: $id, outcome: CREATED, reference: "LATE-1"}) {
    userErrors { code message } }
}
"""
# Long enough for a wait to span a kill and a restart.
SLOW_SHIPMENT = "--shipment-timeout=30"


@contextlib.asynccontextmanager
async def served(
    database_url: str, stub: WarehouseStub, secret_file: Path, *options: str
) -> AsyncIterator[ServerProcess]:
    await asyncio.to_thread(secret_file.write_text, stub.secret)
    async with ordersaga_serve(
        database_url,
        f"--warehouse-service-url={stub.url}",
        f"--warehouse-service-secret-file={secret_file}",
        SLOW_SHIPMENT,
        *FAST_RETRIES,
        *options,
    ) as server:
        yield server


async def place(gql: GraphQLClient) -> str:
    return str((await gql(PLACE))["placeOrder"]["saga"]["id"])


async def shipment(gql: GraphQLClient, saga_id: str) -> dict[str, object]:
    """The saga's one shipment; an empty one before its CREATE_SHIPMENT began."""
    found = (await gql(SHIPMENTS, id=saga_id))["saga"]["order"]["shipments"]
    return found[0] if found else {}  # type: ignore[no-any-return]


async def awaited(gql: GraphQLClient, saga_id: str) -> None:
    for _ in range(200):
        if (await shipment(gql, saga_id)).get("awaitingSince") is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the shipment never became awaited")


# On PostgreSQL the same kill is the survivor's test below: there another process sends it again.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_killed_with_a_command_on_the_wire_the_restarted_server_sends_it_again_under_its_id(
    database_url: str, tmp_path: Path
) -> None:
    stub = WarehouseStub(held=asyncio.Event())
    async with stub.running():
        async with served(database_url, stub, tmp_path / "secret") as server:
            await server.gql(CATALOG)
            saga_id = await place(server.gql)
            await stub.wait_for("CreateShipment", 1)
            await server.kill()
        stub.held.set()  # type: ignore[union-attr]  # it answers into a closed connection
        async with served(database_url, stub, tmp_path / "secret") as server:
            await server.gql.wait_for_saga(saga_id, "COMPLETED", seconds=30)
            assert (await shipment(server.gql, saga_id))["reference"] == "WMS-W1"
        sent = stub.of_type("CreateShipment")
        assert len(sent) >= 2 and {c.id for c in sent} == {f"{saga_id}:CREATE_SHIPMENT:W1"}
        assert stub.refused == []


async def test_killed_while_a_shipment_waits_for_its_report_the_late_report_completes_the_saga(
    database_url: str, tmp_path: Path
) -> None:
    stub = WarehouseStub(script={"W1": [ACCEPTED]})
    async with stub.running():
        async with served(database_url, stub, tmp_path / "secret") as server:
            await server.gql(CATALOG)
            saga_id = await place(server.gql)
            await awaited(server.gql, saga_id)
            await server.kill()
        async with served(database_url, stub, tmp_path / "secret") as server:
            await asyncio.sleep(0.5)  # the restarted server resumes the wait: nothing is sent again
            assert len(stub.of_type("CreateShipment")) == 1
            answered = (await server.gql(REPORT, id=f"{saga_id}:CREATE_SHIPMENT:W1"))["reportShipmentOutcome"]
            assert answered["userErrors"] == []
            await server.gql.wait_for_saga(saga_id, "COMPLETED")
            assert (await shipment(server.gql, saga_id))["reference"] == "LATE-1"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_survivor_takes_over_the_killed_processs_command_and_a_report_reaches_any_process(
    database_url: str, tmp_path: Path
) -> None:
    stub = WarehouseStub(held=asyncio.Event())
    async with stub.running():
        async with (
            served(database_url, stub, tmp_path / "secret", "--lease-ttl=1.5") as first,
            served(database_url, stub, tmp_path / "secret", "--lease-ttl=1.5") as second,
        ):
            await first.gql(CATALOG)
            saga_id = await place(first.gql)
            await stub.wait_for("CreateShipment", 1)
            await first.kill()
            await stub.wait_for("CreateShipment", 2, seconds=20)  # the survivor sent it again
            stub.held.set()  # type: ignore[union-attr]
            await second.gql.wait_for_saga(saga_id, "COMPLETED", seconds=20)

            stub.script["W1"] = [ACCEPTED]
            other = await place(second.gql)
            await awaited(second.gql, other)
            async with served(database_url, stub, tmp_path / "secret", "--lease-ttl=1.5") as third:
                answered = (await third.gql(REPORT, id=f"{other}:CREATE_SHIPMENT:W1"))[
                    "reportShipmentOutcome"
                ]
                assert answered["userErrors"] == []
                await second.gql.wait_for_saga(other, "COMPLETED")
        assert {c.id for c in stub.of_type("CreateShipment", "W1")} == {
            f"{saga_id}:CREATE_SHIPMENT:W1",
            f"{other}:CREATE_SHIPMENT:W1",
        }
