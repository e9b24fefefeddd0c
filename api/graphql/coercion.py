"""Input values made into input classes from maps found once per class, not once per request.

To build an input class from a client's value, strawberry finds, for every field of every input
value of every request, the field's GraphQL name (converting its Python name to camel case) and its
type (resolving its annotation): the same answers every time, since the schema does not change once
built. `prepare_inputs` gives each input class a `from_input` (strawberry's hook for input classes
that build their own values) that does what strawberry's default does, from those answers found
once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryMaybe, StrawberryObjectDefinition

FromInput = Callable[[type, Mapping[str, Any], InputContext], Any]


def field_map_builder(definition: StrawberryObjectDefinition, schema: strawberry.Schema) -> FromInput:
    """strawberry's way of building an input class from its value, with each field's GraphQL name
    and type found now."""
    names = schema.config.name_converter
    # A field the client left out is None unless it has a default, as strawberry makes it.
    omitted = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    fields = [
        (names.from_field(field), field.python_name, field.resolve_type(type_definition=definition))
        for field in definition.fields
    ]

    def from_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        kwargs: dict[str, Any] = dict(omitted)
        for name, python_name, field_type in fields:
            if name in value:
                kwargs[python_name] = context.convert(value[name], field_type, name)
        return cls(**kwargs)

    return from_input


def prepare_inputs(schema: strawberry.Schema) -> None:
    """Gives the schema's input classes a `from_input` built by `field_map_builder`, in their
    definitions, which follow this schema's naming from now on. Not to one with a `Maybe` field:
    strawberry's validation leaves the nulls of a class with a `from_input` to it."""
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        if (
            isinstance(definition, StrawberryObjectDefinition)
            and definition.is_input
            and definition.from_input is None
            and not any(isinstance(field.type, StrawberryMaybe) for field in definition.fields)
        ):
            definition.from_input = field_map_builder(definition, schema)
