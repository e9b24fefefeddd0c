"""Every log line about a saga carries its id (and the step in hand), whoever logged it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.observability.logs import MAX_FRAMES, log_handler
from domain.model.saga import Participant, shipment_id_of
from tests.integration.staging import start_stage


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = log_handler("json", stream)
    logger = logging.getLogger("ordersaga")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_lines_logged_while_driving_a_saga_carry_its_id(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    stage = await start_stage(f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}")
    try:
        await stage.stock()
        stage.gate.breaks[Participant.INVENTORY] = 1
        broken = await stage.order(1)
        stage.gate.refusals[Participant.SHIPMENT] = 1
        refused = await stage.order(1)
        orders = {s: (await stage.svc.read.saga(s)).order_id for s in (broken, refused)}  # type: ignore[union-attr]
        shipment = (await stage.svc.read.order(orders[refused])).shipment_id  # type: ignore[union-attr]
        await stage.svc.orchestrator.dispatch_shipment(refused, shipment)
    finally:
        await stage.svc.stop()

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    story = [
        (line["saga_id"], line["step"], line["levelname"], line["message"])
        for line in lines
        if line["name"] == "ordersaga.saga"
    ]
    assert story == [
        (broken, None, "DEBUG", f"saga started for order {orders[broken]}"),
        # The orchestrator's own line, logged by the saga's driver with no id passed along.
        (broken, "RESERVE_STOCK", "ERROR", f"saga {broken}: advancing failed; retrying from its journal"),
        (broken, None, "DEBUG", "saga completed"),
        (refused, None, "DEBUG", f"saga started for order {orders[refused]}"),
        (
            refused,
            "CREATE_SHIPMENT",
            "WARNING",
            "CREATE_SHIPMENT attempt 1 failed (will retry): SHIPMENT is down",
        ),
        (refused, None, "DEBUG", "saga completed"),
        (refused, None, "DEBUG", f"shipment {shipment} dispatched"),
    ]
    [crash] = [line for line in lines if line["levelname"] == "ERROR"]
    assert "RuntimeError: the INVENTORY link broke" in crash["exc_info"]


async def test_a_lost_commit_outcome_is_one_warning_and_the_saga_goes_on(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    """The saga is read again from its journal: an expected event of a database that drops
    connections, logged without a traceback."""
    stage = await start_stage(f"sqlite+aiosqlite:///{tmp_path / 'lost.db'}")
    try:
        await stage.stock()
        stage.gate.losses[Participant.INVENTORY] = 1
        lost = await stage.order(1)
        saga = await stage.svc.read.saga(lost)
    finally:
        await stage.svc.stop()

    assert saga is not None and saga.status == "COMPLETED"
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [told] = [
        line
        for line in lines
        if line["name"] == "ordersaga.saga" and line["levelname"] in ("WARNING", "ERROR")
    ]
    assert (told["levelname"], told["saga_id"], told.get("exc_info")) == ("WARNING", lost, None)
    assert told["message"].startswith(f"saga {lost}: the connection was lost as the work committed")


def test_text_lines_name_the_saga_and_step() -> None:
    from domain.orchestration.context import current_saga, current_step

    stream = io.StringIO()
    logger = logging.getLogger("ordersaga.test")
    logger.addHandler(handler := log_handler("text", stream))
    logger.setLevel(logging.INFO)
    try:
        logger.info("no saga in hand")
        saga, step = current_saga.set("saga-1"), current_step.set("CONFIRM_ORDER")
        logger.info("confirming")
        current_step.reset(step)
        current_saga.reset(saga)
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO ordersaga.test no saga in hand")
    assert second.endswith("INFO ordersaga.test confirming saga_id=saga-1 step=CONFIRM_ORDER")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_line_names_the_process_that_wrote_it(log_format: str) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("ordersaga.instance-test")
    logger.addHandler(handler := log_handler(log_format, stream, instance="host-a:41"))
    try:
        logger.warning("lease round failed")
    finally:
        logger.removeHandler(handler)

    line = stream.getvalue().strip()
    if log_format == "json":
        assert json.loads(line)["instance"] == "host-a:41"
    else:
        assert line.endswith("lease round failed instance=host-a:41")


async def test_sagas_that_complete_and_ship_log_nothing_at_info(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    """A steady load of sagas that go as they should logs nothing per saga at INFO or above: what an
    operator reads at INFO is what went wrong, not every order."""
    stage = await start_stage(f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}")
    try:
        await stage.stock()
        for _ in range(3):
            saga_id = await stage.order(1)
            order = (await stage.svc.read.saga(saga_id)).order_id  # type: ignore[union-attr]
            shipment = (await stage.svc.read.order(order)).shipment_id  # type: ignore[union-attr]
            await stage.svc.orchestrator.dispatch_shipment(saga_id, shipment)
    finally:
        await stage.svc.stop()
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    about_sagas = [line for line in lines if line.get("saga_id")]
    assert len(about_sagas) >= 9  # started, completed and dispatched, for each
    assert [line["message"] for line in about_sagas if line["levelname"] != "DEBUG"] == []


async def test_a_refused_shipment_is_logged_as_a_warning_naming_it(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    stage = await start_stage(f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}")
    try:
        await stage.stock()
        stage.gate.refusing.add("W1")
        saga_id = await stage.order(1)
    finally:
        await stage.svc.stop()

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    refused = [
        (line["saga_id"], line["step"], line["levelname"], line["message"])
        for line in lines
        if line["message"].startswith("shipment ")
    ]
    shipment_id = shipment_id_of(saga_id, "W1")
    assert refused == [
        (
            saga_id,
            "CREATE_SHIPMENT",
            "WARNING",
            f"shipment {shipment_id} refused: warehouse W1 refused the shipment",
        )
    ]


def _ping(depth: int) -> int:
    return _pong(depth + 1)


def _pong(depth: int) -> int:
    return _ping(depth + 1)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_error_thousands_of_frames_deep_is_logged_in_one_bounded_record(log_format: str) -> None:
    # Two functions calling each other: Python's own folding of repeated lines does not apply.
    with pytest.raises(RecursionError) as raised:
        _ping(0)
    stream = io.StringIO()
    record = logging.LogRecord("ordersaga.api", logging.ERROR, __file__, 1, "internal error", None, None)
    record.exc_info = (raised.type, raised.value, raised.tb)
    log_handler(log_format, stream).handle(record)

    written = stream.getvalue()
    text = json.loads(written)["exc_info"] if log_format == "json" else written
    assert len(written.splitlines()) == (1 if log_format == "json" else len(text.splitlines()))
    assert len(text.splitlines()) < 3 * MAX_FRAMES + 10  # a frame: where, its line, its markers
    assert "outer frames left out of" in text and text.rstrip().endswith("maximum recursion depth exceeded")
