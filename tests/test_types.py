"""The type check, as one of the tests: mypy over the packages pyproject.toml names, then `--strict`
over the domain, which imports nothing but the standard library and so can be held to it.

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


@pytest.mark.slow(seconds=15)  # the whole project and the libraries it calls, from no cache in CI
def test_mypy_finds_no_error() -> None:
    # One after the other, in one test: the second reads the first's cache, and two mypy processes
    # must not write one cache at once.
    for options in ([], ["--strict", "domain"]):
        command = [sys.executable, "-m", "mypy", *options]
        checked = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
        assert checked.returncode == 0, (
            f"{' '.join(['mypy', *options])}:\n{checked.stdout[-4000:]}{checked.stderr[-2000:]}"
        )
