"""Tokens for tests against a service that trusts one HS256 secret, and a client that sends them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from api.access.auth import AuthConfig, Role, mint_token
from api.service import Service
from api.settings import Settings
from tests.api.server import TLS, serve

SECRET = "a test secret, long enough for HS256 keys and for the HS512 token that it must refuse"
AUTH = AuthConfig(secret=SECRET)


def token(subject: str, *roles: str, ttl: timedelta = timedelta(minutes=5)) -> str:
    return mint_token(SECRET, subject, [Role(r) for r in roles], ttl)


# The callers below are made once, when the tests are collected: their tokens outlive any run of
# the suite, however busy the machine.
CALLER_TTL = timedelta(hours=3)


def bearer(subject: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, *roles, ttl=CALLER_TTL)}"}


CUSTOMER_A = bearer("customer-a", "customer")
CUSTOMER_B = bearer("customer-b", "customer")
OPERATOR = bearer("operator-1", "operator")
ADMIN = bearer("admin-1", "admin")
WAREHOUSE = bearer("warehouse-1", "warehouse")


class Caller:
    """Posts GraphQL over HTTP with fixed headers and answers the whole body (data and errors)."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.http, self.headers = http, headers

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=self.headers
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self(query, **variables)
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]


def codes(body: dict[str, Any]) -> list[str]:
    """The `extensions.code` of each error in a GraphQL answer."""
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]


@dataclass
class Served:
    svc: Service
    url: str
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Served]:
    svc = Service(settings)
    async with serve(svc) as url, httpx.AsyncClient(base_url=url, timeout=10, verify=TLS) as http:
        yield Served(svc, url, http)
