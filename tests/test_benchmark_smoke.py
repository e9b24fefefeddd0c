"""The benchmark harness keeps working: a tiny run of every cell, with its correctness checks, on
SQLite and, when the tests have a PostgreSQL server, on PostgreSQL too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow  # benchmark cells, in processes of their own


@pytest.mark.slow(seconds=40)  # every cell of the benchmark
def test_the_benchmark_harness_runs_and_checks_every_saga(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    server = os.environ.get("ORDERSAGA_TEST_POSTGRES_URL")
    on_postgres = [] if server is None else ["--postgres", make_url(server).render_as_string(False)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--report", str(report), *on_postgres],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = report.read_text()
    assert len(re.findall(r"^\| hot \| 2 \|", table, re.MULTILINE)) == (1 if server is None else 2)
    assert "| DBOS plain sagas/s |" in table
    assert "| False |" not in table
    assert "](benchmarks.png)" in table
    # Every side ran its warm-up sagas untimed first: the slowest of them is listed, per database.
    warmed = re.findall(
        r"^- hot c=2, 2 sagas: ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)$", table, re.MULTILINE
    )
    assert len(warmed) == (1 if server is None else 2)
    assert all(float(ms) > 0 for row in warmed for ms in row)
    fanned_out = re.findall(r"^\| \w+ \| 20 x 2 \| (\d+) \|.*\| (\w+) \|$", table, re.MULTILINE)
    assert len(fanned_out) == (1 if server is None else 2)
    assert all(int(messages) >= 20 * 2 and in_order == "True" for messages, in_order in fanned_out)
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
    webhooks = re.findall(
        r"^\| \w+ \| hot \| 2 \|.*\| (\d+) \| [\d.]+ \| [\d.]+ / [\d.]+ \| [\d.]+ \| (\w+) \|$",
        table,
        re.MULTILINE,
    )
    assert len(webhooks) == (1 if server is None else 2)
    assert all(int(events) > 0 and ok == "True" for events, ok in webhooks)


def test_the_delivery_cell_sends_every_event(tmp_path: Path) -> None:
    report = tmp_path / "delivery.json"
    command = [sys.executable, "-m", "benchmarks.delivery", "--sagas", "20", "--json", str(report)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    cell = json.loads(report.read_text())
    assert cell["events"] == 20 * 7 and cell["failed"] == 0 and cell["correct"] is True
    assert cell["cpu_us_per_event"] > 0
