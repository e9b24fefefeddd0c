"""The pure parts of authentication and authorization: where a WebSocket's token is found, which
hosts are loopback, the root fields an operation touches, per-principal mutation limits, the
ownership rule, and the `ordersaga token` / `serve` options."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse
from hypothesis import given, settings
from hypothesis import strategies as st

from api.access import rate_limits
from api.access.auth import AuthConfig, Principal, Role, bearer_of, read_secret
from api.access.guard import root_fields
from api.access.rate_limits import MutationRateLimit
from api.access.rules import acting_role, customer_filter, may_act_for, shown_actor
from api.cli import main, parser
from api.subcommands.serve import is_loopback
from api.subcommands.serve_options import settings_from


@pytest.mark.parametrize(
    "payload",
    [
        {"Authorization": "Bearer t"},
        {"authorization": "Bearer t"},
        {"headers": {"Authorization": "Bearer t"}},
        {"headers": {"authorization": "Bearer t"}},
    ],
)
def test_the_token_is_found_in_each_shape_of_connection_init(payload: dict[str, object]) -> None:
    assert bearer_of(payload) == "Bearer t"


def test_connection_init_without_a_token_has_none() -> None:
    assert bearer_of({}) is None
    assert bearer_of({"headers": "Authorization"}) is None
    assert bearer_of({"Authorization": 42}) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def _fields(document: str) -> list[str]:
    parsed = parse(document)
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    (operation,) = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    return list(root_fields(operation.selection_set, fragments))


def test_root_fields_are_found_through_fragments_and_counted_per_alias() -> None:
    document = """
      query {
        a: orders { edges { cursor } } b: orders { edges { cursor } }
        ...F ... on Query { saga(id: "x") { id } }
      }
      fragment F on Query { sagaMetrics { started } ...G }
      fragment G on Query { __typename }
    """
    assert _fields(document) == ["orders", "orders", "sagaMetrics", "__typename", "saga"]


# Each example counts dozens of hits; on a busy machine that can pass hypothesis' 200 ms deadline.
@settings(deadline=None)
@given(st.integers(min_value=1, max_value=20), st.integers(min_value=0, max_value=40))
def test_a_principal_gets_exactly_its_limit_and_others_keep_theirs(limit: int, attempts: int) -> None:
    async def count() -> None:
        limits = MutationRateLimit(f"{limit}/minute")
        admitted = [await limits.admit("a", 1) is None for _ in range(attempts)]
        assert admitted == [True] * min(attempts, limit) + [False] * max(0, attempts - limit)
        assert await limits.admit("b", 1) is None

    asyncio.run(count())


async def test_a_refused_batch_counts_nothing_and_says_when_to_try_again() -> None:
    limits = MutationRateLimit("5/minute")
    assert await limits.admit("a", 4) is None
    retry_after = await limits.admit("a", 2)
    assert retry_after is not None and 1 <= retry_after <= 60
    assert await limits.admit("a", 1) is None  # the refused two were not counted


@pytest.mark.parametrize("storage", ["bogus://x", "memcached://127.0.0.1:11211"])
def test_a_rate_limit_or_storage_that_cannot_be_used_is_refused(storage: str) -> None:
    with pytest.raises(ValueError):
        MutationRateLimit("many per second")
    with pytest.raises(ValueError, match="rate limit storage"):
        MutationRateLimit("5/minute", storage)


async def test_limits_in_one_shared_store_hold_for_every_process_together(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is shown here is the shared count, not the store's deadline (a store too slow admits): on
    # a busy machine the first hit, which opens the connection, can outlast the service's quarter
    # second.
    monkeypatch.setattr(rate_limits, "STORE_TIMEOUT_S", 10.0)
    # Two limiters, as two processes would hold, counting in one Redis.
    first, second = MutationRateLimit("3/minute", redis_url), MutationRateLimit("3/minute", redis_url)
    subject = f"shared-{uuid.uuid4()}"
    admitted = [await limiter.admit(subject, 1) is None for limiter in (first, second, first, second)]
    assert admitted == [True, True, True, False]


async def test_a_store_that_does_not_answer_admits() -> None:
    unreachable = MutationRateLimit("1/minute", "redis://127.0.0.1:1/0")
    assert [await unreachable.admit("a", 1) for _ in range(2)] == [None, None]


CUSTOMER = Principal("alice", frozenset({Role.CUSTOMER}))
OPERATOR = Principal("op", frozenset({Role.OPERATOR}))
NOBODY = Principal("nobody", frozenset())


def test_a_customer_acts_only_for_itself_and_staff_for_everyone() -> None:
    assert may_act_for(CUSTOMER, "alice") and not may_act_for(CUSTOMER, "bob")
    assert may_act_for(OPERATOR, "alice") and may_act_for(OPERATOR, "bob")
    assert not may_act_for(NOBODY, "alice")
    assert customer_filter(CUSTOMER, None) == customer_filter(CUSTOMER, "bob") == "alice"
    assert customer_filter(OPERATOR, None) is None and customer_filter(OPERATOR, "bob") == "bob"


def test_a_secret_shorter_than_32_bytes_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(ValueError, match="shorter than 32 bytes"):
        read_secret(short)
    good = tmp_path / "good"
    good.write_text("x" * 32 + "\n")
    assert read_secret(good) == "x" * 32


def printed_claims(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """The claims of the token `ordersaga token ARGS` prints, signed with a secret of its own."""
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    main(["token", *args, "--auth-secret-file", str(secret)])
    return dict(jwt.decode(capsys.readouterr().out.strip(), "s" * 40, algorithms=["HS256"]))


def test_the_token_command_prints_a_token_the_secret_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = printed_claims(
        tmp_path, capsys, "--subject", "alice", "--role", "customer", "--role", "operator", "--ttl", "60"
    )
    assert claims["sub"] == "alice" and claims["roles"] == ["customer", "operator"]
    assert claims["exp"] - claims["iat"] == 60 and "warehouses" not in claims


def test_the_token_command_names_the_warehouses_a_warehouse_token_speaks_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = printed_claims(
        tmp_path,
        capsys,
        "--subject",
        "wms",
        "--role",
        "warehouse",
        "--warehouse",
        "BER",
        "--warehouse",
        "HAM",
    )
    assert claims["warehouses"] == ["BER", "HAM"]


def test_the_token_command_needs_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERSAGA_AUTH_SECRET_FILE", raising=False)
    with pytest.raises(SystemExit, match="--auth-secret-file"):
        main(["token", "--subject", "alice", "--role", "customer"])


@pytest.mark.parametrize("subject", ["", "   ", "a\x00b"])
def test_the_token_command_refuses_a_subject_the_server_would_refuse(tmp_path: Path, subject: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    with pytest.raises(SystemExit, match="--subject"):
        main(["token", "--subject", subject, "--role", "customer", "--auth-secret-file", str(secret)])


def test_serve_takes_its_auth_settings_from_options_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    monkeypatch.setenv("ORDERSAGA_AUTH_ISSUER", "https://id.example.test/")
    monkeypatch.setenv("ORDERSAGA_MUTATION_RATE_LIMIT", "5/second")
    settings = settings_from(
        parser().parse_args(["serve", "--auth-secret-file", str(secret), "--auth-audience", "a"])
    )
    assert settings.auth == AuthConfig(secret="s" * 40, issuer="https://id.example.test/", audience="a")
    assert settings.auth.leeway == timedelta(seconds=30)
    assert settings.mutation_limits == "5/second"
    jwks = settings_from(parser().parse_args(["serve", "--auth-jwks-url", "https://id.example.test/jwks"]))
    assert jwks.auth.jwks_url == "https://id.example.test/jwks" and jwks.auth.secret is None
    with pytest.raises(SystemExit, match="choose one"):
        settings_from(
            parser().parse_args(["serve", "--auth-secret-file", str(secret), "--auth-jwks-url", "https://x/"])
        )


def test_without_auth_options_the_service_is_in_development_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRET_FILE", "JWKS_URL", "ISSUER", "AUDIENCE"):
        monkeypatch.delenv(f"ORDERSAGA_AUTH_{name}", raising=False)
    assert not settings_from(parser().parse_args(["serve"])).auth.configured


def test_the_leeway_is_an_option_or_an_environment_variable_and_never_negative(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings_from(parser().parse_args(["serve", "--auth-leeway", "0"])).auth.leeway == timedelta(0)
    monkeypatch.setenv("ORDERSAGA_AUTH_LEEWAY", "2.5")
    assert settings_from(parser().parse_args(["serve"])).auth.leeway == timedelta(seconds=2.5)
    with pytest.raises(SystemExit, match="--auth-leeway"):
        settings_from(parser().parse_args(["serve", "--auth-leeway", "-1"]))


def test_a_customer_is_shown_staff_who_stepped_in_as_their_role_and_staff_the_subject() -> None:
    customer = Principal("alice", frozenset({Role.CUSTOMER}))
    operator = Principal("op1", frozenset({Role.OPERATOR}))
    assert shown_actor(customer, "op1", "operator") == "operator"
    assert shown_actor(customer, "alice", "customer") == "alice"
    assert shown_actor(customer, "op1", None) == "staff"  # journalled before roles were kept
    assert shown_actor(customer, None, None) is None
    assert shown_actor(operator, "admin-1", "admin") == "admin-1"
    assert shown_actor(operator, "op1", None) == "op1"


def test_an_intervention_is_recorded_in_the_callers_most_powerful_role() -> None:
    roles = [Role.CUSTOMER, Role.OPERATOR, Role.ADMIN]
    assert [acting_role(Principal("x", frozenset(roles[: n + 1]))) for n in range(3)] == roles
