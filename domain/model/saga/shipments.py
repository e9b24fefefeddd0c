"""The saga's shipments, one per warehouse its picks come from: their ids, and their life as the saga
knows it from the warehouses' answers."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from domain.model.values import Pick


class ShipmentStatus(enum.Enum):
    """A shipment's life, as the saga knows it from the warehouse's answers."""

    # Its command is sent (or about to be), or a remote warehouse accepted it (`accepted_at`): the
    # warehouse has not answered yet.
    REQUESTED = "REQUESTED"
    CREATED = "CREATED"  # the warehouse holds it, to be picked and sent
    REJECTED = "REJECTED"  # the warehouse refused it
    CANCELLED = "CANCELLED"  # withdrawn with its order (or never created, its order turned back)
    DISPATCHED = "DISPATCHED"  # picked and sent: its stock left the warehouse


@dataclass(frozen=True, slots=True)
class Shipment:
    """One warehouse's shipment of the order: the picks the order takes from that warehouse."""

    shipment_id: str
    warehouse_code: str
    picks: tuple[Pick, ...]
    status: ShipmentStatus
    requested_at: datetime
    created_at: datetime | None = None
    dispatched_at: datetime | None = None
    # Why the warehouse refused it; None unless REJECTED.
    reason: str | None = None
    # When a remote warehouse accepted its command to answer later; None once answered, and for
    # the built-in warehouse, which answers at once.
    accepted_at: datetime | None = None
    # What a remote warehouse calls it.
    reference: str | None = None
    # A remote warehouse accepted its command at least once (a later attempt may be on the wire).
    was_accepted: bool = False
    # The remote warehouse service its commands go to (ShipmentRouted); None: the built-in warehouse,
    # or a journal written before routes were journalled, whose accepted shipments go to the
    # warehouse's service of the moment.
    service_url: str | None = None

    @property
    def awaited(self) -> bool:
        """A remote warehouse accepted it and the saga waits for its answer now."""
        return self.status is ShipmentStatus.REQUESTED and self.accepted_at is not None

    @property
    def is_remote(self) -> bool:
        """Its commands went to a remote warehouse service, not the built-in warehouse: it was routed
        there, or, in a journal written before routes were journalled, a remote warehouse accepted or
        created it (the built-in warehouse gives no reference)."""
        return self.service_url is not None or self.was_accepted or self.reference is not None

    @property
    def may_exist(self) -> bool:
        """Requested, and a command for it went to a remote warehouse, which may have acted on it
        whatever it answered, or whether its answer arrived: only a cancel makes sure it does not
        exist there."""
        return self.status is ShipmentStatus.REQUESTED and self.is_remote

    @property
    def may_be_held(self) -> bool:
        """Created, or may exist (`may_exist`): a warehouse may hold it, so withdrawing it takes a
        cancel."""
        return self.status is ShipmentStatus.CREATED or self.may_exist


def shipment_id_of(saga_id: str, warehouse_code: str) -> str:
    """The id of the saga's shipment from `warehouse_code`: a UUID (version 5) of both, so every
    attempt, and every process after a restart, sends the same shipment under the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ordersaga:shipment:{saga_id}:{warehouse_code}"))


def requested_shipments(saga_id: str, picks: tuple[Pick, ...], at: datetime) -> tuple[Shipment, ...]:
    """One shipment per warehouse the picks come from, in warehouse code order, each with that
    warehouse's picks."""
    codes = sorted({p.warehouse_code for p in picks})
    return tuple(
        Shipment(
            shipment_id_of(saga_id, code),
            code,
            tuple(p for p in picks if p.warehouse_code == code),
            ShipmentStatus.REQUESTED,
            at,
        )
        for code in codes
    )
