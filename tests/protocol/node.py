"""Node.js scripts run against a served ordersaga: reference clients and conformance audits that
other people wrote. Their npm packages are pinned by package-lock.json here and installed with
`npm ci` the first time a test needs them."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGES = Path(__file__).parent
REQUIRE_NODE_ENV = "ORDERSAGA_REQUIRE_NODE"
NODE_TIMEOUT_SECONDS = 60


@functools.cache
def _installed() -> str | None:
    """None once the packages are installed, or why they cannot be."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "the protocol tests need Node.js and npm (apt-get install -y nodejs npm)"
    # Test processes running side by side (pytest -n) take turns: one installs, the others then find
    # the packages there, rather than see a half-written node_modules or install over each other.
    with (PACKAGES / "package-lock.json").open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (PACKAGES / "node_modules").exists():
            npm_ci = ["npm", "ci", "--no-audit", "--no-fund"]
            subprocess.run(npm_ci, cwd=PACKAGES, check=True, capture_output=True, timeout=300)
    return None


async def run_node(script: Path, *args: str) -> str:
    """Run `script` with node and answer what it printed; fail the test if it exits non-zero or runs
    longer than NODE_TIMEOUT_SECONDS."""
    missing = await asyncio.to_thread(_installed)
    if missing is not None:
        if os.environ.get(REQUIRE_NODE_ENV):
            pytest.fail(missing)
        pytest.skip(missing)
    process = await asyncio.create_subprocess_exec(
        "node", str(script), *args, cwd=PACKAGES, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()
