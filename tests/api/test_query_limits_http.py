"""Abuse limits on GraphQL documents hold, and do not cost the validation cache its hits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from graphql import DocumentNode, GraphQLError, GraphQLSchema
from strawberry.schema.schema import validate_document

from api.graphql import operation_document
from api.graphql.schema import MAX_ALIASES, MAX_DEPTH
from api.service import Service
from api.settings import Settings
from tests.api.server import GraphQLClient, graphql_client


@pytest.fixture
async def gql(tmp_path: Path) -> AsyncIterator[GraphQLClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    async with graphql_client(Service(Settings(database_url=url))) as client:
        yield client


async def messages(gql: GraphQLClient, query: str) -> list[str]:
    response = await gql.http.post("/graphql", json={"query": query})
    return [e["message"] for e in response.json().get("errors", [])]


async def test_a_document_nested_deeper_than_the_limit_is_refused(gql: GraphQLClient) -> None:
    nested = "order { saga { " * MAX_DEPTH + "id" + " } }" * MAX_DEPTH
    deep = '{ saga(id: "x") { ' + nested + " } }"
    assert any("exceeds maximum operation depth" in m for m in await messages(gql, deep))


async def test_a_document_with_more_aliases_than_the_limit_is_refused(gql: GraphQLClient) -> None:
    aliased = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES + 1)) + " }"
    assert any("aliases" in m for m in await messages(gql, aliased))
    within = "{ " + " ".join(f"a{n}: __typename" for n in range(MAX_ALIASES)) + " }"
    assert await messages(gql, within) == []


async def test_a_repeated_document_is_validated_once(
    gql: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[DocumentNode] = []

    def validate(schema: GraphQLSchema, document: DocumentNode, rules: Any) -> list[GraphQLError]:
        validated.append(document)
        return validate_document(schema, document, rules)

    monkeypatch.setattr(operation_document, "validate_document", validate)
    # A text no other test sends, so the first request is the cache's first sight of it.
    query = '{ stockLevels(sku: "VALIDATED-ONCE") { onHand } }'
    await gql(query)
    await gql(query)
    assert len(validated) == 1
