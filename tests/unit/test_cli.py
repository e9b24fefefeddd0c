"""`ordersaga serve` options reach the service's settings."""

from __future__ import annotations

import base64
import socket
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import pytest

from api.cli import main, parser
from api.outbound.signing import new_secret
from api.settings import Settings, StreamSettings
from api.subcommands.serve import listen
from api.subcommands.serve_options import settings_from
from domain.model.saga import SagaPolicy


def serve_settings(*argv: str) -> Settings:
    return settings_from(parser().parse_args(["serve", *argv]))


def test_fault_injection_is_off_unless_asked_for() -> None:
    settings = serve_settings()
    assert (settings.fault_injection, settings.fault_seed) == (False, None)
    assert settings.policy == SagaPolicy()


def test_fault_injection_its_seed_and_the_step_policy_come_from_the_command_line() -> None:
    settings = serve_settings(
        "--enable-fault-injection",
        "--fault-seed=42",
        "--compensation-timeout=2.5",
        "--reserve-timeout=1",
        "--max-retries=5",
        "--retry-backoff=0.2",
    )
    assert (settings.fault_injection, settings.fault_seed) == (True, 42)
    assert settings.policy == SagaPolicy(
        reserve_timeout=timedelta(seconds=1),
        compensation_timeout=timedelta(seconds=2.5),
        max_attempts=5,
        retry_backoff=timedelta(seconds=0.2),
    )


def test_serve_help_shows_every_default() -> None:
    serve = parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = [action for action in serve._actions if action.dest != "help"]
    assert len(options) > 15
    undocumented = [action.option_strings[0] for action in options if "default" not in (action.help or "")]
    assert undocumented == []
    assert "(default 1048576)" in " ".join(serve.format_help().split())


def test_without_a_nats_url_there_is_no_stream() -> None:
    assert serve_settings().stream is None


def test_the_stream_options_reach_the_settings_with_their_defaults() -> None:
    assert serve_settings("--nats-url=nats://127.0.0.1:4222").stream == StreamSettings(
        url="nats://127.0.0.1:4222", stream="ORDERSAGA", subject_prefix="ordersaga"
    )
    chosen = serve_settings(
        "--nats-url=tls://nats.example:4222",
        "--nats-stream=ORDERS_EU",
        "--nats-subject-prefix=shop.eu",
        "--nats-duplicate-window=900",
    ).stream
    assert chosen == StreamSettings(
        url="tls://nats.example:4222",
        stream="ORDERS_EU",
        subject_prefix="shop.eu",
        duplicate_window=timedelta(minutes=15),
    )


@pytest.mark.parametrize(
    ("option", "complaint"),
    [
        ("--nats-url=http://127.0.0.1:4222", "--nats-url must be a URL"),
        ("--nats-url=nats://", "--nats-url must be a URL"),
        ("--nats-url=ws://127.0.0.1:8080", "--nats-url must be a URL"),
        ("--nats-stream=ORDERS.EU", "--nats-stream must be"),
        ("--nats-stream=", "--nats-stream must be"),
        ("--nats-subject-prefix=shop.>", "--nats-subject-prefix must be"),
        ("--nats-subject-prefix=shop..eu", "--nats-subject-prefix must be"),
        ("--nats-subject-prefix=shop *", "--nats-subject-prefix must be"),
        ("--nats-duplicate-window=10", "must be longer than --lease-ttl"),
    ],
)
def test_stream_options_nats_would_refuse_end_serve_with_one_line(option: str, complaint: str) -> None:
    argv = ["--nats-url=nats://127.0.0.1:4222", option] if not option.startswith("--nats-url") else [option]
    with pytest.raises(SystemExit) as exit_:
        serve_settings(*argv)
    assert complaint in str(exit_.value.code)


def test_rate_limits_are_counted_in_memory_unless_a_shared_store_is_named() -> None:
    assert serve_settings().rate_limit_storage == "memory://"
    shared = serve_settings("--rate-limit-storage=redis://127.0.0.1:6379/0")
    assert shared.rate_limit_storage == "redis://127.0.0.1:6379/0"


def test_webhook_options_reach_the_settings() -> None:
    defaults = serve_settings()
    assert (defaults.webhook_connect_timeout, defaults.webhook_timeout) == (2.0, 10.0)
    assert (defaults.webhook_retry_for, defaults.webhook_disable_after) == (timedelta(days=1), None)
    assert defaults.allow_private_webhook_urls is False
    settings = serve_settings(
        "--allow-private-webhook-urls",
        "--webhook-connect-timeout=0.5",
        "--webhook-timeout=3",
        "--webhook-retry-for=3600",
        "--webhook-disable-after=600",
    )
    assert settings.allow_private_webhook_urls is True
    assert (settings.webhook_connect_timeout, settings.webhook_timeout) == (0.5, 3.0)
    assert settings.webhook_retry_for == timedelta(hours=1)
    assert settings.webhook_disable_after == timedelta(minutes=10)


@pytest.mark.parametrize(
    "option",
    ["--webhook-connect-timeout", "--webhook-timeout", "--webhook-retry-for", "--webhook-disable-after"],
)
def test_webhook_times_must_be_positive(option: str) -> None:
    with pytest.raises(SystemExit, match=f"{option} must be more than 0 seconds"):
        parser().parse_args(["serve", f"{option}=0"])


def number_options() -> list[tuple[str, str]]:
    """(subcommand, option) for every option of every subcommand read into a number: those whose
    `type` is a reader of api/subcommands/numbers.py."""
    found = []
    commands = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    projections = commands["projections"]._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    subcommands = {**commands, "projections rebuild": projections["rebuild"]}
    for name, subcommand in subcommands.items():
        for action in subcommand._actions:
            if getattr(action.type, "__module__", None) == "api.subcommands.numbers":
                found.append((name, action.option_strings[0]))
    return found


NUMBER_OPTIONS = number_options()


def test_every_number_option_is_found() -> None:
    # Those the next test tries; a new one is tried without being listed here.
    assert {option for _, option in NUMBER_OPTIONS} >= {
        "--port",
        "--reserve-timeout",
        "--max-retries",
        "--retry-backoff",
        "--fault-seed",
        "--max-body-bytes",
        "--header-timeout",
        "--auth-leeway",
        "--lease-ttl",
        "--nats-duplicate-window",
        "--webhook-connect-timeout",
        "--webhook-timeout",
        "--webhook-retry-for",
        "--webhook-disable-after",
        "--webhook-keep-succeeded",
        "--workers",
        "--ttl",
        "--batch-size",
    }


@pytest.mark.parametrize(("subcommand", "option"), NUMBER_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e300", "-1e300", "1" + "0" * 30, "x"])
def test_a_number_option_refuses_what_is_no_number_or_out_of_bounds_in_one_line(
    subcommand: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args([*subcommand.split(), f"{option}={value}"])
    message = str(exit_.value.code)
    assert message.startswith(f"{option} must be ") and message.endswith(f"not {value!r}")
    assert "\n" not in message
    assert capsys.readouterr().err == ""  # not argparse's usage: the message is the one line


def test_bounds_are_inclusive_as_said() -> None:
    args = parser().parse_args(["serve", "--port=65535", "--retry-backoff=0", "--webhook-timeout=86400"])
    assert (args.port, args.retry_backoff, args.webhook_timeout) == (65535, 0.0, 86400.0)
    with pytest.raises(
        SystemExit, match="--webhook-timeout must be more than 0 seconds and at most 86400 seconds"
    ):
        parser().parse_args(["serve", "--webhook-timeout=86400.5"])


def test_a_warehouse_service_is_signed_with_the_secret_file_it_needs(tmp_path: Path) -> None:
    secret = new_secret()
    (tmp_path / "secret").write_text(secret + "\n")
    chosen = serve_settings(
        "--warehouse-service-url=http://wms.internal:8080/commands",
        f"--warehouse-service-secret-file={tmp_path / 'secret'}",
    )
    assert (chosen.warehouse_service_url, chosen.warehouse_service_secret) == (
        "http://wms.internal:8080/commands",
        secret,
    )
    assert (serve_settings().warehouse_service_url, serve_settings().warehouse_service_secret) == (None, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--warehouse-service-url=http://wms/commands"], "needs --warehouse-service-secret-file"),
        (["--warehouse-service-url=ftp://wms/commands"], "must be an http or https URL"),
        (["--warehouse-service-secret-file=/nonexistent/secret"], "cannot use the warehouse service secret"),
    ],
)
def test_a_warehouse_service_that_cannot_be_used_stops_the_start(options: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        serve_settings(*options)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("not-whsec", "does not start with whsec_"),
        ("Z29sZGVuLWpvdXJuYWxzLXdhcmVob3VzZS1zZWNyZXQ=", "does not start with whsec_"),
        ("whsec_not-base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"k" * 16).decode(), "key is 16 bytes"),
        ("whsec_" + base64.b64encode(b"k" * 65).decode(), "key is 65 bytes"),
    ],
)
def test_a_warehouse_service_secret_not_in_the_specifications_form_stops_the_start(
    tmp_path: Path, secret: str, problem: str
) -> None:
    # standardwebhooks would sign with whatever base64 it finds in such text: a key no warehouse holds.
    (tmp_path / "secret").write_text(secret)
    options = [f"--warehouse-service-secret-file={tmp_path / 'secret'}"]
    with pytest.raises(SystemExit, match=f"cannot use the warehouse service secret in .*: .*{problem}"):
        serve_settings(*options)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgresql://user:p%40ss@db.internal/orders",
            "postgresql+asyncpg://user:p%40ss@db.internal/orders",
        ),
        ("postgres://user@db.internal:5433/orders", "postgresql+asyncpg://user@db.internal:5433/orders"),
        ("sqlite:////var/lib/ordersaga/o.db", "sqlite+aiosqlite:////var/lib/ordersaga/o.db"),
        ("postgresql+asyncpg://user@db.internal/orders", "postgresql+asyncpg://user@db.internal/orders"),
        ("sqlite+aiosqlite:///o.db", "sqlite+aiosqlite:///o.db"),
        # As hosting platforms hand them out: libpq's sslmode is asyncpg's ssl.
        ("postgres://u@db.internal/o?sslmode=require", "postgresql+asyncpg://u@db.internal/o?ssl=require"),
        ("postgres+asyncpg://u@db.internal/o", "postgresql+asyncpg://u@db.internal/o"),
        (
            "postgresql+asyncpg://u@db.internal/o?sslmode=verify-full",
            "postgresql+asyncpg://u@db.internal/o?ssl=verify-full",
        ),
    ],
)
@pytest.mark.parametrize("subcommand", ["serve", "migrate", "projections rebuild"])
def test_a_database_url_naming_no_driver_runs_on_the_async_one(
    subcommand: str, given: str, used: str
) -> None:
    assert parser().parse_args([*subcommand.split(), f"--database-url={given}"]).database_url == used


@pytest.mark.parametrize("password", ["hunter2", "pa/ss", "p@ss", "p:ss", "pa?ss", "pa#ss"])
def test_a_url_whose_port_is_no_number_is_refused_in_one_line_without_its_password(
    capsys: pytest.CaptureFixture[str], password: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["migrate", f"--database-url=postgresql://u:{password}@db:54x2/orders"])
    message = str(exit_.value.code)
    assert message.startswith("--database-url: postgresql://u:***@db:54x2/orders cannot be read: ")
    assert password not in message + capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "told"),
    [
        (
            "postgresql+psycopg2://user:secret@db.internal/orders",
            "use postgresql+asyncpg://user:***@db.internal/orders",
        ),
        ("sqlite+pysqlite:///o.db", "use sqlite+aiosqlite:///o.db"),
    ],
)
def test_a_blocking_driver_is_refused_in_one_line_with_the_url_to_use(
    given: str, told: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args(["migrate", f"--database-url={given}"])
    message = str(exit_.value.code)
    assert message.startswith("--database-url: ordersaga runs on async drivers") and message.endswith(told)
    assert "secret" not in message and capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["serve", "--prot", "9000"], "usage: ordersaga serve "),
        (["projections", "rebuild", "--foo"], "usage: ordersaga projections rebuild "),
    ],
)
def test_an_unknown_option_is_refused_with_the_usage_of_its_command(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(usage)
        and f"error: unrecognized arguments: {' '.join(argv[-2:] if argv[0] == 'serve' else argv[-1:])}"
        in err
    )


def test_version_says_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"ordersaga {version('ordersaga')}\n"


@pytest.mark.parametrize("where", ["directory", "missing/schema.graphql"])
def test_a_schema_that_cannot_be_written_is_said_in_one_line(tmp_path: Path, where: str) -> None:
    target = tmp_path / where if where != "directory" else tmp_path
    with pytest.raises(SystemExit) as exit_:
        main(["export-schema", "--output", str(target)])
    message = str(exit_.value.code)
    assert message.startswith(f"cannot write the schema to {target}: ") and "\n" not in message


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="the machine has no IPv6 loopback")
def test_serve_binds_every_address_of_its_host_on_one_port_and_ipv6_alone_beside_ipv4(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = socket.SOCK_STREAM
    both = [
        (socket.AF_INET, stream, 6, "", ("127.0.0.1", 0)),
        (socket.AF_INET6, stream, 6, "", ("::1", 0, 0, 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: both)
    bound = listen("localhost", 0)
    try:
        assert [s.family for s in bound] == [socket.AF_INET, socket.AF_INET6]
        assert len({s.getsockname()[1] for s in bound}) == 1  # one port, the one printed
        assert bound[1].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for each in bound:
            each.close()
    monkeypatch.undo()
    alone = listen("::", 0)  # IPv6 alone takes IPv4 too, as a container's `--host ::` expects
    try:
        assert alone[0].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    finally:
        alone[0].close()
