"""The benchmark harness keeps working: a tiny run of every cell, with its correctness checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_benchmark_harness_runs_and_checks_every_saga(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = report.read_text()
    assert "| uniform | 2 |" in table and "| hot | 2 |" in table
    assert "| False |" not in table
