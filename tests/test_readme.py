"""The README's commands are the ones CI runs, and its GraphQL examples fit the schema."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_schema, parse, validate

from api.access.auth import Role
from api.access.rules import RULES
from api.graphql.schema import schema

ROOT = Path(__file__).parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_the_readme_opens_with_the_serve_and_the_test_command() -> None:
    serve, test = readme_commands()[:2]
    assert "pip install" in serve and serve.endswith("ordersaga serve --demo")
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = readme_commands()[1]
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_graphql_examples_are_valid_against_the_schema() -> None:
    served = build_schema(schema.as_str())
    examples = re.findall(r"```graphql\n(.+?)\n```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(examples) >= 5
    for example in examples:
        assert validate(served, parse(example)) == [], example


def test_the_readme_roles_table_is_the_rules_table() -> None:
    """Every operation of `api/access/rules.py` has a row in the README's table, with its rule's roles."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| operations | customer | operator | admin |") :].split("\n\n")[0]
    documented: dict[str, frozenset[Role]] = {}
    for row in table.splitlines()[2:]:
        names, *cells = (cell.strip() for cell in row.strip("|").split("|"))
        roles = frozenset(role for role, cell in zip(Role, cells, strict=True) if cell)
        documented.update((name, roles) for name in re.findall(r"`(\w+)`", names))
    rules = {field: roles for fields in RULES.values() for field, roles in fields.items()}
    assert {field: documented.get(field) for field in rules} == rules
