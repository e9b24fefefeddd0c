"""The schema documents itself, as a client reads it over HTTP (introspection, as GraphiQL's docs do):
every type, field, argument, input field and enum value has a description, and every root field says
which roles may call it, as the access rules decide."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from strawberry.types.graphql import OperationType

from api.access.auth import Role
from api.access.rules import RULES
from api.graphql.journal import DEFAULT_JOURNAL_PAGE
from tests.api.server import GraphQLClient

# GraphQL's own scalars are described by the specification, not by this schema.
BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}
INTROSPECTION = """{
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      name kind description
      fields(includeDeprecated: true) { name description args { name description } }
      inputFields { name description }
      enumValues(includeDeprecated: true) { name description }
    }
  }
}"""


def undescribed(types: list[dict[str, Any]]) -> Iterator[str]:
    """The name of every element of the schema's own types that has no description."""
    for kind in types:
        name = kind["name"]
        if name.startswith("__") or name in BUILT_IN:
            continue
        if not (kind["description"] or "").strip():
            yield name
        for field in kind["fields"] or ():
            if not (field["description"] or "").strip():
                yield f"{name}.{field['name']}"
            yield from (
                f"{name}.{field['name']}({arg['name']})"
                for arg in field["args"]
                if not (arg["description"] or "").strip()
            )
        for element in [*(kind["inputFields"] or ()), *(kind["enumValues"] or ())]:
            if not (element["description"] or "").strip():
                yield f"{name}.{element['name']}"


async def test_every_type_field_argument_input_field_and_enum_value_is_described(gql: GraphQLClient) -> None:
    types = (await gql(INTROSPECTION))["__schema"]["types"]
    assert len(types) > 60  # the whole schema was read
    assert list(undescribed(types)) == []


def test_the_walk_names_what_lacks_a_description() -> None:
    types = [
        {"name": "String", "description": None, "fields": None, "inputFields": None, "enumValues": None},
        {
            "name": "Thing",
            "description": "A thing.",
            "fields": [{"name": "size", "description": " ", "args": [{"name": "unit", "description": None}]}],
            "inputFields": None,
            "enumValues": None,
        },
        {
            "name": "Colour",
            "description": "",
            "fields": None,
            "inputFields": None,
            "enumValues": [{"name": "RED", "description": None}, {"name": "BLUE", "description": "Blue."}],
        },
    ]
    assert list(undescribed(types)) == ["Thing.size", "Thing.size(unit)", "Colour", "Colour.RED"]


async def test_every_root_field_names_the_roles_the_access_rules_give_it(gql: GraphQLClient) -> None:
    schema = (await gql(INTROSPECTION))["__schema"]
    by_name = {kind["name"]: kind for kind in schema["types"]}
    for kind in OperationType:
        root = by_name[schema[f"{kind.value}Type"]["name"]]
        assert {field["name"] for field in root["fields"]} == set(RULES[kind]), kind
        for field in root["fields"]:
            said = re.findall(r"Roles: ([a-z, ]+)[.;]", field["description"])
            assert len(said) == 1, field
            allowed = RULES[kind][field["name"]]
            assert said[0].split(", ") == [role.value for role in Role if role in allowed], field["name"]
            assert ("refused with FORBIDDEN" in field["description"]) == (allowed != set(Role)), field


async def test_a_connections_default_page_is_said_alike_on_the_field_and_its_first_argument(
    gql: GraphQLClient,
) -> None:
    said = re.compile(r"(\d+) when neither `first` nor `last` is given")
    types = (await gql(INTROSPECTION))["__schema"]["types"]
    defaults = {}
    for kind in types:
        for field in kind["fields"] or ():
            first = next((arg for arg in field["args"] if arg["name"] == "first"), None)
            on_argument = said.search(first["description"]) if first is not None else None
            if on_argument is not None:
                on_field = said.search(field["description"] or "")
                defaults[f"{kind['name']}.{field['name']}"] = (on_field and on_field[1], on_argument[1])
    disagreeing = {name: pair for name, pair in defaults.items() if pair[0] not in (None, pair[1])}
    assert disagreeing == {}
    assert defaults["Query.journalEvents"] == (str(DEFAULT_JOURNAL_PAGE),) * 2
