"""Development mode in a real `ordersaga serve` process: without authentication it serves loopback
only, unless told --allow-anonymous, and says at start that every caller is admin."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx

from tests.api.server import TLS
from tests.api.tokens import SECRET, codes
from tests.crash.server_process import ORDERSAGA, _free_port

QUERY = {"query": "{ participantFaults { participant } }"}


async def _run(tmp_path: Path, *options: str) -> tuple[int | None, str, list[str] | None]:
    """Start `ordersaga serve` on all interfaces with `options`; once it answers /healthz over
    loopback (or has exited), ask an admin's query and stop it. Its exit code if it stopped by
    itself, its output, and the error codes the query got (None when it never served)."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "serve",
        "--database-url",
        f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    answered: list[str] | None = None
    exited: int | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, verify=TLS) as http:
            for _ in range(300):
                if process.returncode is not None:
                    exited = process.returncode
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        answered = codes((await http.post("/graphql", json=QUERY)).json())
                        break
                await asyncio.sleep(0.1)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), 30))[0].decode(errors="replace")
    return exited, output, answered


async def test_without_auth_a_non_loopback_host_is_refused(tmp_path: Path) -> None:
    exited, output, answered = await _run(tmp_path)
    assert exited not in (None, 0)
    assert answered is None
    assert "refusing to serve 0.0.0.0 without authentication" in output


async def test_allow_anonymous_serves_everyone_as_admin_and_warns(tmp_path: Path) -> None:
    exited, output, answered = await _run(tmp_path, "--allow-anonymous")
    assert exited is None
    assert answered == []
    assert "development mode: no authentication is configured, so every caller acts as admin" in output


async def test_with_auth_any_host_is_served_and_anonymous_callers_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    exited, output, answered = await _run(tmp_path, "--auth-secret-file", str(secret))
    assert exited is None
    assert answered == ["UNAUTHENTICATED"]
    assert "development mode" not in output
