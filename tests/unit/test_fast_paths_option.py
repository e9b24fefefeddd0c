"""`serve` takes the fast paths' switch from its option or the environment; on unless told off."""

from __future__ import annotations

import pytest

from api.cli import parser
from api.subcommands.serve_options import FAST_PATHS_SETTING, settings_from


def _fast_paths(*argv: str) -> bool:
    return settings_from(parser().parse_args(["serve", *argv])).fast_paths


def test_the_fast_paths_are_on_unless_the_option_or_the_environment_turns_them_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(FAST_PATHS_SETTING, raising=False)
    assert _fast_paths()
    assert not _fast_paths("--no-fast-paths")
    monkeypatch.setenv(FAST_PATHS_SETTING, "0")
    assert not _fast_paths()
    monkeypatch.setenv(FAST_PATHS_SETTING, "1")
    assert _fast_paths()
    assert not _fast_paths("--no-fast-paths")
