"""Input classes built by the plans of `api.graphql.edge.input_building` are the ones strawberry's own
conversion builds, for every input type of the schema: the same classes, fields, UNSET and None, and
lists of their own."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    Undefined,
    coerce_input_value,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from strawberry.relay import GlobalID
from strawberry.scalars import JSON
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryObjectDefinition, get_object_definition
from strawberry.types.maybe import Some

from api.graphql.edge.input_building import InputBuilder, install_input_builders
from api.graphql.orders import OrderLineInput, PlaceOrderInput
from api.graphql.schema import build_schema


class Kind(enum.Enum):
    PLAIN = "plain"
    ODD = "odd"


@strawberry.input
class Leaves:
    """Every kind of field the plans convert, each way a field may default."""

    name: str
    nickname: str | None  # no default: None when omitted
    kind: Kind = Kind.PLAIN
    at: datetime | None = strawberry.UNSET
    data: JSON | None = None
    tags: list[str | None] = strawberry.field(default_factory=list)
    grid: list[list[int]] | None = strawberry.UNSET
    kinds: list[Kind] = strawberry.field(default_factory=lambda: [Kind.ODD])


@strawberry.input(one_of=True)
class Choice:
    word: str | None = strawberry.UNSET
    number: int | None = strawberry.UNSET


@strawberry.input
class Tree:
    label: str
    leaves: Leaves | None = None
    children: list[Tree] | None = None
    choice: Choice | None = None


@strawberry.input
class WithMaybe:
    note: strawberry.Maybe[str]


@strawberry.input
class WithGlobalId:
    id: GlobalID


@strawberry.input
class Outer:
    """Planned but for its field of a type left to strawberry."""

    tree: Tree
    maybe: WithMaybe | None = None


@strawberry.type
class Query:
    @strawberry.field
    def leaves(self, tree: Tree, outer: Outer, with_global_id: WithGlobalId) -> str:
        return "seen"

    @strawberry.field
    def maybe(self, value: WithMaybe) -> str:
        return "seen"


SCHEMAS = {"app": build_schema(True), "throwaway": strawberry.Schema(query=Query)}


def input_definitions(schema: strawberry.Schema) -> dict[str, StrawberryObjectDefinition]:
    return {
        name: concrete.definition
        for name, concrete in schema.schema_converter.type_map.items()
        if isinstance(concrete.definition, StrawberryObjectDefinition) and concrete.definition.is_input
    }


@pytest.fixture(scope="module", autouse=True)
def builders() -> Iterator[None]:
    """The builders installed for this module's tests, and whatever was there before put back."""
    before = {
        definition: definition.from_input
        for schema in SCHEMAS.values()
        for definition in input_definitions(schema).values()
    }
    for schema in SCHEMAS.values():
        install_input_builders(schema)
    yield
    for definition, from_input in before.items():
        definition.from_input = from_input


def input_type(schema: strawberry.Schema, name: str) -> GraphQLInputObjectType:
    gql_type = schema._schema.type_map[name]
    assert isinstance(gql_type, GraphQLInputObjectType)
    return gql_type


@contextmanager
def strawberry_own(schema: strawberry.Schema) -> Iterator[None]:
    """Every input type of `schema` built by strawberry's generic conversion, for a while."""
    definitions = input_definitions(schema).values()
    installed = [definition.from_input for definition in definitions]
    for definition in definitions:
        definition.from_input = None
    try:
        yield
    finally:
        for definition, from_input in zip(definitions, installed, strict=True):
            definition.from_input = from_input


def convert(schema: strawberry.Schema, value: object, cls: type) -> object:
    return convert_argument(value, cls, schema.schema_converter.scalar_registry, schema.config)


# Text of any code point, lone surrogates and NUL included.
texts = st.text(st.characters(exclude_categories=()), max_size=8)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "String": texts,
    "ID": texts,
    "Int": st.integers(-(2**31), 2**31 - 1),
    "Float": st.floats(allow_nan=False, allow_infinity=False),
    "Boolean": st.booleans(),
    "DateTime": st.builds(
        lambda at, offset: at.replace(tzinfo=offset).isoformat(),
        st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
        offsets,
    ),
    "JSON": json_values,
}


def sent(data: st.DataObject, type_: GraphQLInputType, depth: int = 0) -> object:
    """A value of `type_` as a client may send it, in JSON: nulls where nullable, optional fields
    omitted, a list given as its one item."""
    if not isinstance(type_, GraphQLNonNull):
        return None if data.draw(st.integers(0, 3)) == 0 else _sent_value(data, type_, depth)
    return _sent_value(data, type_.of_type, depth)


def _sent_value(data: st.DataObject, type_: GraphQLInputType, depth: int) -> object:
    if isinstance(type_, GraphQLList):
        if data.draw(st.integers(0, 5)) == 0:  # coerced into a list of one, unless null
            item_type = type_.of_type
            return sent(
                data,
                item_type if isinstance(item_type, GraphQLNonNull) else GraphQLNonNull(item_type),
                depth + 1,
            )
        return [
            sent(data, type_.of_type, depth + 1) for _ in range(data.draw(st.integers(0, 3 - min(depth, 3))))
        ]
    # strawberry's OneOf types are checked by their out_type, not graphql-core's is_one_of
    if isinstance(type_, GraphQLInputObjectType) and type_.extensions["strawberry-definition"].is_one_of:
        name, field = data.draw(st.sampled_from(list(type_.fields.items())))
        return {name: sent(data, GraphQLNonNull(field.type), depth + 1)}
    if isinstance(type_, GraphQLInputObjectType):
        return {
            name: sent(data, field.type, depth + 1)
            for name, field in type_.fields.items()
            if (isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined)
            or (depth < 4 and data.draw(st.booleans()))
        }
    if isinstance(type_, GraphQLEnumType):
        return data.draw(st.sampled_from(list(type_.values)))
    assert isinstance(type_, GraphQLScalarType)
    return data.draw(SCALARS[type_.name])  # a new scalar needs its strategy here


def unset_here_and_there(data: st.DataObject, value: object, type_: GraphQLInputType) -> object:
    """`value` with some of its input fields' values UNSET, as strawberry's own defaults may be. New
    dicts and lists of input objects: graphql-core's defaults are shared, and are not to be changed."""
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLList) and isinstance(value, list):
        if isinstance(_named(type_), GraphQLInputObjectType):
            return [unset_here_and_there(data, item, type_.of_type) for item in value]
        return value
    if isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
        return {
            name: strawberry.UNSET
            if data.draw(st.integers(0, 9)) == 0
            else unset_here_and_there(data, item, type_.fields[name].type)
            for name, item in value.items()
        }
    return value


def _named(type_: GraphQLInputType) -> GraphQLInputType:
    while isinstance(type_, (GraphQLNonNull, GraphQLList)):
        type_ = type_.of_type
    return type_


def assert_same(built: object, expected: object, sent: set[int], path: str = "") -> None:
    """The same classes all the way down (a str-valued enum equals its str, and UNSET must stay
    UNSET), the same values, and the same lists and dicts taken as they were sent (whose ids are
    `sent`) or copied: graphql-core hands every request the same default lists."""
    assert type(built) is type(expected), f"{path}: {type(built)} is not {type(expected)}"
    assert (id(built) in sent) == (id(expected) in sent), f"{path}: copied by one of them only"
    if dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same(
                getattr(built, field.name), getattr(expected, field.name), sent, f"{path}.{field.name}"
            )
    elif isinstance(expected, list):
        assert isinstance(built, list) and len(built) == len(expected), path
        for index, (built_item, expected_item) in enumerate(zip(built, expected, strict=True)):
            assert_same(built_item, expected_item, sent, f"{path}[{index}]")
    else:
        assert built == expected, path


def containers_in(value: object) -> Iterator[object]:
    """Every list and dict in an input value."""
    if isinstance(value, (list, dict)):
        yield value
        for item in value if isinstance(value, list) else value.values():
            yield from containers_in(item)


CASES = [
    (schema_name, type_name)
    for schema_name, schema in SCHEMAS.items()
    for type_name in sorted(input_definitions(schema))
    if schema_name == "app" or type_name in ("Leaves", "Tree", "Choice")
]


@pytest.mark.parametrize(("schema_name", "type_name"), CASES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_an_input_is_built_as_strawberry_builds_it(
    schema_name: str, type_name: str, data: st.DataObject
) -> None:
    schema = SCHEMAS[schema_name]
    gql_type = input_type(schema, type_name)
    cls = input_definitions(schema)[type_name].origin
    value = coerce_input_value(sent(data, GraphQLNonNull(gql_type)), gql_type)
    if data.draw(st.booleans()):
        value = unset_here_and_there(data, value, gql_type)
    with strawberry_own(schema):
        expected = convert(schema, value, cls)
    built = convert(schema, value, cls)
    assert_same(built, expected, {id(container) for container in containers_in(value)})


def test_every_input_type_of_the_app_has_a_builder() -> None:
    # None of them is left to strawberry's conversion, with and without the fast paths
    for schema in (SCHEMAS["app"], build_schema(False)):
        definitions = input_definitions(schema)
        assert {"PlaceOrderInput", "OrderLineInput"} <= set(definitions)
        assert all(isinstance(d.from_input, InputBuilder) for d in definitions.values()), [
            name for name, d in definitions.items() if not isinstance(d.from_input, InputBuilder)
        ]


def test_a_type_with_a_field_the_plans_do_not_convert_is_left_to_strawberry() -> None:
    schema = SCHEMAS["throwaway"]
    planned = {
        name for name, definition in input_definitions(schema).items() if definition.from_input is not None
    }
    # Outer nests WithMaybe, which strawberry builds: so it does Outer too
    assert planned == {"Leaves", "Tree", "Choice"}
    value = {
        "tree": {"label": "root", "children": [{"label": "leaf"}]},
        "maybe": {"note": "kept"},
    }
    assert convert(schema, value, Outer) == Outer(
        tree=Tree(label="root", children=[Tree(label="leaf")]), maybe=WithMaybe(note=Some("kept"))
    )
    encoded = str(GlobalID("Thing", "7"))
    assert convert(schema, {"id": encoded}, WithGlobalId) == WithGlobalId(id=GlobalID("Thing", "7"))
    # strawberry's validation still refuses a null for a Maybe, which it would skip were it planned
    result = schema.execute_sync("{ maybe(value: {note: null}) }")
    assert result.errors and "cannot be explicitly set to null" in result.errors[0].message


def test_a_subclass_is_built_as_itself() -> None:
    class Named(Leaves):
        pass

    schema = SCHEMAS["throwaway"]
    build = get_object_definition(Leaves, strict=True).from_input
    assert build is not None
    context = InputContext(
        info=None, config=schema.config, scalar_registry=schema.schema_converter.scalar_registry, path=()
    )
    made = build(Named, {"name": "x"}, context)
    assert type(made) is Named
    assert made == Named(name="x", nickname=None)


def test_installing_again_plans_again() -> None:
    schema = SCHEMAS["app"]
    definition = get_object_definition(PlaceOrderInput, strict=True)
    first = definition.from_input
    install_input_builders(schema)
    assert isinstance(definition.from_input, InputBuilder) and definition.from_input is not first
    value = coerce_input_value(
        {"lines": [{"sku": "A", "quantity": 1}]}, input_type(schema, "PlaceOrderInput")
    )
    assert convert(schema, value, PlaceOrderInput) == PlaceOrderInput(
        customer_id=None, lines=[OrderLineInput(sku="A", quantity=1)]
    )
