"""`ordersaga serve` options reach the service's settings."""

from __future__ import annotations

from datetime import timedelta

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
