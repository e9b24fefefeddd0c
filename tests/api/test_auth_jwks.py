"""Tokens of an OIDC provider, checked against its JWKS document served on a loopback port: RS256 and
ES256 keys, issuer and audience, key rotation (a new kid is fetched, a withdrawn key stops working),
and no algorithm but the one the key is for."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import AuthConfig
from api.settings import Settings
from tests.api.server import serve_app
from tests.api.subscriptions import subscriptions
from tests.api.tokens import Caller, codes, served

ISSUER = "https://id.example.test/"
AUDIENCE = "ordersaga"
QUERY = "{ orders { edges { cursor } } }"


@dataclass
class Provider:
    """An identity provider's signing keys; `published` are the kids its JWKS document lists."""

    keys: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.published.append(kid)

    def document(self) -> dict[str, Any]:
        jwks = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            jwks.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": jwks}

    def token(self, kid: str, **changes: Any) -> str:
        key = self.keys[kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        claims: dict[str, Any] = {
            "sub": "customer-a",
            "roles": ["customer"],
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": int(time.time()) + 300,
            **changes,
        }
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@contextlib.asynccontextmanager
async def provider_and_service(database_url: str) -> AsyncIterator[tuple[Provider, httpx.AsyncClient]]:
    provider = Provider()

    async def jwks(_: Request) -> JSONResponse:
        provider.fetches += 1
        return JSONResponse(provider.document())

    settings = Settings(database_url=database_url)
    async with serve_app(Starlette(routes=[Route("/jwks", jwks)]), settings) as idp_url:
        auth = AuthConfig(
            jwks_url=f"{idp_url}/jwks", issuer=ISSUER, audience=AUDIENCE, jwks_refresh_cooldown=timedelta(0)
        )
        async with served(dataclasses.replace(settings, auth=auth)) as server:
            yield provider, server.http


def _caller(http: httpx.AsyncClient, token: str) -> Caller:
    return Caller(http, {"Authorization": f"Bearer {token}"})


async def test_provider_tokens_are_checked_against_its_published_keys_issuer_and_audience(
    database_url: str,
) -> None:
    async with provider_and_service(database_url) as (provider, http):
        provider.add_rsa("rsa-1")
        provider.add_ec("ec-1")
        for kid in ("rsa-1", "ec-1"):
            assert "errors" not in await _caller(http, provider.token(kid))(QUERY)
        for wrong in ({"iss": "https://elsewhere.test/"}, {"aud": "another-service"}, {"aud": None}):
            token = provider.token("rsa-1", **wrong)
            assert codes(await _caller(http, token)(QUERY)) == ["UNAUTHENTICATED"], wrong
        fetched = provider.fetches
        for _ in range(3):
            await _caller(http, provider.token("rsa-1"))(QUERY)
        assert provider.fetches == fetched  # the key set is cached


async def test_a_rotated_key_is_fetched_and_a_withdrawn_one_stops_working(database_url: str) -> None:
    async with provider_and_service(database_url) as (provider, http):
        provider.add_rsa("2026-01")
        old = provider.token("2026-01")
        assert "errors" not in await _caller(http, old)(QUERY)

        provider.add_rsa("2026-02")  # rotation: the new key is published, the old one withdrawn
        provider.published.remove("2026-01")
        assert "errors" not in await _caller(http, provider.token("2026-02"))(QUERY)
        assert codes(await _caller(http, old)(QUERY)) == ["UNAUTHENTICATED"]


async def test_no_algorithm_but_the_keys_own_is_accepted(database_url: str) -> None:
    async with provider_and_service(database_url) as (provider, http):
        provider.add_rsa("rsa-1")
        public_pem = (
            provider.keys["rsa-1"]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        claims = {
            "sub": "admin",
            "roles": ["admin"],
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": int(time.time()) + 60,
        }
        # The classic confusion: HMAC-signed with the public key, which anyone has.
        forged = _hs256_with(public_pem, claims, kid="rsa-1")
        assert codes(await _caller(http, forged)(QUERY)) == ["UNAUTHENTICATED"]
        unknown_kid = jwt.encode(claims, provider.keys["rsa-1"], algorithm="RS256", headers={"kid": "nobody"})
        assert codes(await _caller(http, unknown_kid)(QUERY)) == ["UNAUTHENTICATED"]


def _hs256_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = ".".join(
        part(json.dumps(x).encode()) for x in ({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


async def test_while_the_provider_is_unreachable_callers_are_told_to_retry(database_url: str) -> None:
    auth = AuthConfig(jwks_url="http://127.0.0.1:9/jwks", issuer=ISSUER, audience=AUDIENCE)
    provider = Provider()
    provider.add_rsa("rsa-1")
    token = provider.token("rsa-1")
    async with served(Settings(database_url=database_url, auth=auth)) as server:
        body = await _caller(server.http, token)(QUERY)
        metrics = await server.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        # The socket is not closed as if the token were bad: its operations say to retry.
        async with subscriptions(server.url, {"Authorization": f"Bearer {token}"}) as client:
            await client.subscribe("1", QUERY)
            over_socket = await client.refusal("1")
    assert metrics.status_code == 503
    assert [error["extensions"]["code"] for error in over_socket] == ["SERVICE_UNAVAILABLE"]
    assert codes(body) == ["SERVICE_UNAVAILABLE"]
    assert body["errors"][0]["message"] == "the token's signing keys cannot be fetched now"
    assert body["errors"][0]["extensions"]["retryAfterSeconds"] == 10
