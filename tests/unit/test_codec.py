"""The journal's event format: every event round-trips at this release's version, an older version is
upcast, and a version or type this release does not know is refused rather than guessed at."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.model.saga import (
    CUSTOMER_CANCELLED,
    CompensationStarted,
    CustomerCancelled,
    SagaAborted,
    SagaEvent,
    SagaParked,
    SagaRetried,
    SagaStarted,
    ShipmentAccepted,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentRejected,
    ShipmentRouted,
    Step,
    StepFailed,
    StepStarted,
    StepSucceeded,
    StepTimedOut,
)
from domain.model.values import OrderLine, Pick
from persistence import codec

AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)

EVERY_EVENT: list[SagaEvent] = [
    SagaStarted("order-1", "alice", (OrderLine("SKU-1", 2),), AT),
    StepStarted(Step.RESERVE_STOCK, 1, LATER, AT),
    StepSucceeded(Step.RESERVE_STOCK, AT, (Pick("W1", "A", "SKU-1", 2),)),
    StepSucceeded(Step.CREATE_SHIPMENT, AT, shipment_id="shipment-1"),
    StepFailed(Step.CONFIRM_ORDER, 2, "ORDERS is down", True, LATER, AT),
    StepTimedOut(Step.RELEASE_STOCK, 3, "RELEASE_STOCK timed out after 5s", None, AT),
    CompensationStarted("short of SKU-1", AT),
    SagaParked("CREATE_SHIPMENT failed after 3 attempts", AT),
    SagaRetried(AT, "operator-1", "operator"),
    SagaAborted("the carrier lost the parcel", AT, "admin-1", "admin"),
    CustomerCancelled(AT, CUSTOMER_CANCELLED, "alice", "customer"),
    ShipmentDispatched("shipment-1", LATER),
    ShipmentCreated("shipment-2", AT),
    ShipmentCreated("shipment-4", AT, "WMS-77"),
    ShipmentAccepted("shipment-5", AT),
    ShipmentRouted("shipment-5", "https://wms.example/commands", AT),
    ShipmentRejected("shipment-3", "W2 has no carrier today", AT),
]


def test_the_examples_cover_every_event_type() -> None:
    assert {type(e).__name__ for e in EVERY_EVENT} == set(codec.EVENT_TYPES)


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_reads_back_as_written(event: SagaEvent) -> None:
    assert codec.decode(*codec.encode(event)) == event


def test_every_changed_event_has_an_upcaster_from_each_older_version() -> None:
    for type_name, current in codec.EVENT_VERSIONS.items():
        assert type_name in codec.EVENT_TYPES
        assert all((type_name, v) in codec.UPCASTERS for v in range(1, current))


def test_a_customer_cancellation_of_the_first_format_reads_with_the_customer_reason() -> None:
    stored = {"at": AT.isoformat()}
    assert codec.decode("CustomerCancelled", 1, stored) == CustomerCancelled(AT, CUSTOMER_CANCELLED)


def test_an_intervention_recorded_before_roles_were_kept_reads_with_no_role() -> None:
    stored = {"reason": "no carrier", "at": AT.isoformat(), "actor": "operator-1"}
    assert codec.decode("SagaAborted", 2, stored) == SagaAborted("no carrier", AT, "operator-1", None)
    cancelled = {"at": AT.isoformat(), "reason": CUSTOMER_CANCELLED, "actor": "alice"}
    assert codec.decode("CustomerCancelled", 3, cancelled) == CustomerCancelled(
        AT, CUSTOMER_CANCELLED, "alice"
    )


def test_a_shipment_created_before_remote_warehouses_reads_with_no_reference() -> None:
    assert codec.decode("ShipmentCreated", 1, {"shipment_id": "s-1", "at": AT.isoformat()}) == (
        ShipmentCreated("s-1", AT, None)
    )


def test_an_event_newer_than_this_release_is_refused() -> None:
    type_name, version, data = codec.encode(SagaRetried(AT))
    with pytest.raises(codec.UnreadableEvent, match="SagaRetried at format version 4 is unknown"):
        codec.decode(type_name, version + 1, data)


def test_an_event_type_this_release_does_not_know_is_refused() -> None:
    with pytest.raises(codec.UnreadableEvent, match="ShipmentTeleported at format version 1 is unknown"):
        codec.decode("ShipmentTeleported", 1, {"at": AT.isoformat()})
