"""Saga events to and from the JSON kept in the journal.

Conversion follows each event class's field types, so a new event or field needs no code here.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any

from domain import saga
from domain.model import OrderLine, Pick

EVENT_TYPES: dict[str, Any] = {cls.__name__: cls for cls in typing.get_args(saga.SagaEvent)}
_NAMESPACE = {"OrderLine": OrderLine, "Pick": Pick, **vars(saga)}


def encode(event: saga.SagaEvent) -> tuple[str, dict[str, Any]]:
    return type(event).__name__, {f.name: _to_json(getattr(event, f.name)) for f in dataclasses.fields(event)}


def decode(type_name: str, data: dict[str, Any]) -> saga.SagaEvent:
    cls = EVENT_TYPES[type_name]
    hints = _hints(cls)
    return typing.cast(
        saga.SagaEvent, cls(**{name: _from_json(hints[name], value) for name, value in data.items()})
    )


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls, localns=_NAMESPACE)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


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
