"""Who is calling: bearer tokens (JWT, RFC 7519) verified with PyJWT, turned into a `Principal`.

Two ways to trust a token, as deployments do: a shared secret (HS256), or the signing keys an OIDC
provider publishes as a JWKS document (RS256 or ES256, fetched, cached, and fetched again when a
token names a key id not seen yet, at most once per cooldown). Either way the algorithm is pinned to
the key (never `none`), `exp` and `sub` are required, expiry has a leeway for clock skew (30 s
unless configured), and `iss`/`aud` are checked when configured. A verified token is good until its
`exp` plus that leeway: a WebSocket opened with it ends then (`api/web/ws_session.py`). Without
either way, the service runs in development mode and every caller is `DEVELOPER`, an admin.

PyJWT is imported only where a token is read or made: in development mode it is never needed, and
with the cryptography it loads it took about 80 ms of CPU of every start.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.model.problems import is_storable

DEFAULT_LEEWAY = timedelta(seconds=30)
SECRET_ALGORITHM = "HS256"
# What an OIDC provider's keys may sign with; each key is held to the one algorithm it is for.
JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})

if TYPE_CHECKING:
    import jwt


class Role(enum.StrEnum):
    """The roles a token's `roles` claim may list; others are ignored."""

    CUSTOMER = "customer"
    OPERATOR = "operator"
    ADMIN = "admin"
    WAREHOUSE = "warehouse"  # a remote warehouse service (api/access/rules.py says what it may do)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the token's `sub` (for a customer, the customer id) and its roles.
    `warehouses`: the warehouse codes a `warehouse` token speaks for (its `warehouses` claim, a list
    of codes); None, with no such claim: every warehouse."""

    subject: str
    roles: frozenset[Role]
    warehouses: frozenset[str] | None = None


DEVELOPER = Principal("developer", frozenset({Role.ADMIN}))


@dataclass(frozen=True, slots=True)
class Credential:
    """A verified token: who it names, and until when it is good (its `exp` plus the leeway, UTC);
    `valid_until` is None when that is never: the development mode's `DEVELOPER`, or an `exp` past
    the last date Python can hold."""

    principal: Principal
    valid_until: datetime | None


class NotAuthenticated(Exception):
    """No token, or one that cannot be trusted; the message says which, without echoing the token."""


class KeysUnavailable(NotAuthenticated):
    """The token cannot be checked now: the provider's JWKS cannot be fetched. Not the caller's
    fault; it may try again later."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How tokens are trusted: a shared secret, or an OIDC provider's JWKS URL; neither is
    development mode. `issuer` and `audience`, when set, must match the token's `iss` and `aud`."""

    secret: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    # The least time between two fetches of the JWKS for unknown key ids, so that tokens with made-up
    # key ids cannot make the service hammer the provider.
    jwks_refresh_cooldown: timedelta = timedelta(seconds=30)
    # How long past its `exp` a token is still taken, for clocks that disagree a little.
    leeway: timedelta = DEFAULT_LEEWAY

    @property
    def configured(self) -> bool:
        return self.secret is not None or self.jwks_url is not None


def read_secret(path: Path) -> str:
    """The shared secret in the file at `path`, without surrounding whitespace; ValueError when it
    is shorter than 32 bytes (RFC 7518 3.2: an HS256 key is at least the hash's size)."""
    secret = path.read_text().strip()
    if len(secret.encode()) < 32:
        raise ValueError(f"the secret in {path} is shorter than 32 bytes")
    return secret


class Authenticator:
    """Turns the `Authorization` value of a request or a WebSocket's `connection_init` into a
    `Principal`, or raises `NotAuthenticated`."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self._jwks: jwt.PyJWKClient | None = None
        if config.jwks_url:
            import jwt  # lazily, as the module's docstring says

            # The whole key set is cached (for PyJWKClient's lifespan, 5 minutes), not single keys,
            # which it would keep with no expiry: a key the provider withdrew must stop working.
            self._jwks = jwt.PyJWKClient(
                config.jwks_url,
                cooldown_duration=config.jwks_refresh_cooldown.total_seconds(),
                timeout=10,
            )

    @property
    def development(self) -> bool:
        """No way to trust a token is configured: every caller is `DEVELOPER`."""
        return not self.config.configured

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal of a `Bearer <JWT>` credential (RFC 6750)."""
        return (await self.verify(authorization)).principal

    async def verify(self, authorization: str | None) -> Credential:
        """The principal of a `Bearer <JWT>` credential (RFC 6750) and until when its token is good;
        NotAuthenticated (KeysUnavailable while the provider's keys cannot be fetched) otherwise."""
        if self.development:
            return Credential(DEVELOPER, None)
        if not authorization:
            raise NotAuthenticated("no token: send Authorization: Bearer <token>")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("the Authorization value is not Bearer <token>")
        claims = await self._verify(token.strip())
        return Credential(_principal(claims), _valid_until(claims["exp"], self.config.leeway))

    async def _verify(self, token: str) -> dict[str, Any]:
        import jwt  # lazily, as the module's docstring says

        try:
            if self._jwks is not None:
                # PyJWKClient fetches over blocking urllib: off the event loop.
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                if key.algorithm_name not in JWKS_ALGORITHMS:
                    raise NotAuthenticated(
                        f"the token's key is for {key.algorithm_name}, which is not accepted"
                    )
                signing_key, algorithms = key.key, [key.algorithm_name]
            else:
                signing_key, algorithms = self.config.secret, [SECRET_ALGORITHM]
            return jwt.decode(
                token,
                signing_key,
                algorithms=algorithms,
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=self.config.leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.config.audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as error:
            raise NotAuthenticated("the token has expired") from error
        except jwt.PyJWKClientConnectionError as error:
            raise KeysUnavailable("the token's signing keys cannot be fetched now") from error
        except jwt.PyJWTError as error:
            raise NotAuthenticated(f"the token is not valid: {error}") from error


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject, roles = claims["sub"], claims.get("roles", [])
    # The subject is a customer id the databases must store and match alike, as any input's text.
    if not isinstance(subject, str) or not subject or not is_storable(subject):
        raise NotAuthenticated("the token's sub is not a non-empty string without NUL or lone surrogates")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise NotAuthenticated("the token's roles claim is not a list of strings")
    known = {role.value for role in Role}
    warehouses = claims.get("warehouses")
    if warehouses is not None and (
        not isinstance(warehouses, list) or not all(isinstance(code, str) for code in warehouses)
    ):
        raise NotAuthenticated("the token's warehouses claim is not a list of strings")
    return Principal(
        subject,
        frozenset(Role(role) for role in roles if role in known),
        None if warehouses is None else frozenset(warehouses),
    )


def _valid_until(exp: Any, leeway: timedelta) -> datetime | None:
    # PyJWT has checked that `exp` is a NumericDate (RFC 7519 2: seconds since the epoch, UTC).
    try:
        return datetime.fromtimestamp(int(exp), UTC) + leeway
    except (OverflowError, ValueError, OSError):
        return None


def bearer_of(payload: Mapping[str, Any]) -> str | None:
    """The Authorization value in a `connection_init` (or a renewing `ping`) payload, in the shapes
    clients send it: `{"Authorization": ...}`, `{"authorization": ...}`, or either inside
    `{"headers": {...}}`."""
    headers = payload.get("headers")
    for holder in (payload, headers if isinstance(headers, Mapping) else {}):
        for key in ("Authorization", "authorization"):
            value = holder.get(key)
            if isinstance(value, str):
                return value
    return None


def mint_token(
    secret: str,
    subject: str,
    roles: list[Role],
    ttl: timedelta,
    issuer: str | None = None,
    audience: str | None = None,
    warehouses: list[str] | None = None,
) -> str:
    """An HS256 token for `subject` with `roles`, expiring `ttl` from now (for development and tests);
    with `warehouses`, a `warehouse` token that speaks for those warehouse codes only."""
    import jwt  # lazily, as the module's docstring says

    now = datetime.now(UTC)
    claims: dict[str, Any] = {"sub": subject, "roles": [r.value for r in roles], "iat": now, "exp": now + ttl}
    if warehouses is not None:
        claims["warehouses"] = warehouses
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=SECRET_ALGORITHM)
