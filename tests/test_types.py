"""The type check, as one of the tests: mypy over the packages pyproject.toml names (domain, api,
persistence), and `--strict` over the domain, which imports nothing but the standard library and so
can be held to it.

A test rather than a command run before the tests: from no cache, mypy works on one core for about
13 seconds, and run first it left the machine's other core idle that long; among the tests, which
keep both cores busy, it takes its share beside them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow  # mypy in a process of its own


@pytest.mark.parametrize(
    "options",
    # Each with a cache of its own: mypy keys its cache on the options, so runs with different ones
    # would throw out each other's entries, and two processes must not write one cache at once.
    [
        # The packages and the libraries they call, from no cache in CI: among the first to start.
        pytest.param([], id="packages", marks=pytest.mark.slow(seconds=15)),
        pytest.param(["--strict", "--cache-dir", ".mypy_cache/strict", "domain"], id="strict-domain"),
    ],
)
def test_mypy_finds_no_error(options: list[str]) -> None:
    command = [sys.executable, "-m", "mypy", *options]
    checked = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert checked.returncode == 0, checked.stdout[-4000:] + checked.stderr[-2000:]
