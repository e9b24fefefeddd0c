"""`ordersaga serve` options reach the service's settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.cli import _parser, _settings
from api.settings import Settings
from domain.model.saga import SagaPolicy


def serve_settings(*argv: str) -> Settings:
    return _settings(_parser().parse_args(["serve", *argv]))


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
    serve = _parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    options = [action for action in serve._actions if action.dest != "help"]
    assert len(options) > 15
    undocumented = [action.option_strings[0] for action in options if "default" not in (action.help or "")]
    assert undocumented == []
    assert "(default 1048576)" in " ".join(serve.format_help().split())


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
    args = _parser().parse_args(["serve", f"{option}=0"])
    with pytest.raises(SystemExit, match=f"{option} must be more than 0 seconds"):
        args.run(args)
