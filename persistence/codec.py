"""Saga events to and from the JSON kept in the journal, each stored with its format version.

Conversion follows each event class's field types, so a new event type needs no code here. A change
to the fields of an event already in journals raises that type's version in `EVENT_VERSIONS` and adds
an upcaster taking the previous version's data to the new one: a saga journalled by an earlier release
then folds, and finishes, under this one. An event newer than this release reads is refused with
`UnreadableEvent`, never guessed at. tests/golden holds journals of earlier releases to prove it.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from domain.model import saga
from domain.model.values import OrderLine, Pick

EVENT_TYPES: dict[str, Any] = {cls.type_name: cls for cls in typing.get_args(saga.SagaEvent)}
_NAMESPACE = {"OrderLine": OrderLine, "Pick": Pick, **vars(saga)}


Data = dict[str, Any]

# The format version this release writes, per event type; a type not listed is at version 1.
EVENT_VERSIONS: dict[str, int] = {
    # 2: `reason`, so the journal says what the saga's failure reason says; 3: `actor`, who asked;
    # 4: `actor_role`, the role they asked in.
    "CustomerCancelled": 4,
    # 2: `actor`, who asked for it; 3: `actor_role`, the role they asked in.
    "SagaAborted": 3,
    "SagaRetried": 3,
    # 2: `reference`, what a remote warehouse calls the shipment.
    "ShipmentCreated": 2,
}

# (type, version) -> a function from that version's data to the next version's.
UPCASTERS: dict[tuple[str, int], Callable[[Data], Data]] = {
    ("CustomerCancelled", 1): lambda data: {**data, "reason": saga.CUSTOMER_CANCELLED},
    # Who asked was not kept before version 2 (3): nobody is named.
    ("CustomerCancelled", 2): lambda data: {**data, "actor": None},
    ("SagaAborted", 1): lambda data: {**data, "actor": None},
    ("SagaRetried", 1): lambda data: {**data, "actor": None},
    # The role was not kept before: unknown, which a customer is shown as staff.
    ("CustomerCancelled", 3): lambda data: {**data, "actor_role": None},
    ("SagaAborted", 2): lambda data: {**data, "actor_role": None},
    ("SagaRetried", 2): lambda data: {**data, "actor_role": None},
    # The built-in warehouse, the only one before version 2, gives no reference.
    ("ShipmentCreated", 1): lambda data: {**data, "reference": None},
}


class UnreadableEvent(ValueError):
    """A journal entry this release cannot read: an unknown type, or a version newer than it knows.
    Run the release that wrote it (or a later one) instead."""


def encode(event: saga.SagaEvent) -> tuple[str, int, Data]:
    """The event's stored form: its type name, format version and JSON data."""
    type_name = event.type_name
    return type_name, EVENT_VERSIONS.get(type_name, 1), _fields_to_json(event)


def decode(type_name: str, version: int, data: Data) -> saga.SagaEvent:
    """The event stored as `type_name` at format `version`, upcast to this release's version first.
    Raises UnreadableEvent for an unknown type or a version newer than this release writes."""
    cls = EVENT_TYPES.get(type_name)
    current = EVENT_VERSIONS.get(type_name, 1)
    if cls is None or version > current:
        raise UnreadableEvent(
            f"journal event {type_name} at format version {version} is unknown to this release "
            f"(it reads {type_name} up to version {current if cls else 0}); run a release that knows it"
        )
    for older in range(version, current):
        data = UPCASTERS[type_name, older](data)
    hints = _hints(cls)
    return typing.cast(
        saga.SagaEvent, cls(**{name: _from_json(hints[name], value) for name, value in data.items()})
    )


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, localns=_NAMESPACE)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields builds its answer anew on every call; an event's fields never change.
    return tuple(f.name for f in dataclasses.fields(cls))


# Stored as they are. By exact type: a str- or int-valued enum is an instance of str or int too.
_AS_IS = frozenset({str, int, float, bool, type(None)})


def _to_json(value: Any) -> Any:
    if type(value) in _AS_IS:  # most of an event's values: checked first, every event is encoded
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_to_json(value)
    return value


def _fields_to_json(value: Any) -> Data:
    return {name: _to_json(getattr(value, name)) for name in _field_names(value.__class__)}


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_json(inner, value)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_from_json(item, v) for v in value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint(**{name: _from_json(_hints(hint)[name], v) for name, v in value.items()})
    return value
