"""Every saga event keeps the name the journal stores it under (`type_name`), whatever its class is
called: the golden journals of earlier releases (tests/golden) name every event type, and each of
those names still reads back as its event and is written again under the same name."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.model.saga import SagaChange, SagaEvent, SagaParked, SagaStarted
from domain.model.values import OrderLine
from persistence import codec
from persistence.read.projection import timeline_rows
from tests.golden.generate import golden_files

GOLDEN_FILES = golden_files()
AT = datetime(2024, 1, 1, tzinfo=UTC)


def test_every_event_class_names_itself() -> None:
    kinds = typing.get_args(SagaEvent)
    assert all("type_name" in vars(kind) for kind in kinds)  # its own, never a base's
    names = [kind.type_name for kind in kinds]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in GOLDEN_FILES])
def test_a_golden_journals_names_read_back_and_are_written_again(path: Path) -> None:
    for entry in json.loads(path.read_text())["journal"]:
        event = codec.decode(entry["type"], entry.get("version", 1), entry["data"])
        assert event.type_name == entry["type"]
        assert codec.encode(event)[0] == entry["type"]


class ParkedForAnOperator(SagaParked):
    """SagaParked under another class name, as a rename would leave it."""

    __slots__ = ()


def test_a_renamed_event_class_is_stored_under_its_old_name() -> None:
    parked = ParkedForAnOperator("the shipment kept failing", AT)
    assert codec.encode(parked)[0] == "SagaParked"
    change = SagaChange.started("s1", SagaStarted("o1", "c1", (OrderLine("SKU-1", 1),), AT))
    rows = timeline_rows(change.apply([parked]))
    assert [row["type"] for row in rows] == ["SagaStarted", "SagaParked"]


def test_docs_events_lists_every_event_type_once() -> None:
    """docs/events.md documents the types webhook endpoints subscribe to: exactly the journal's."""
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    table = text[text.index("| type | what happened |") :].split("\n\n")[0]
    documented = [row.split("|")[1].strip().strip("`") for row in table.splitlines()[2:]]
    assert sorted(documented) == sorted(codec.EVENT_TYPES)
