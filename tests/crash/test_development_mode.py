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
from tests.crash.server_process import ORDERSAGA, ServerProcess

QUERY = {"query": "{ participantFaults { participant } }"}


async def _run(tmp_path: Path, *options: str) -> tuple[int | None, str, list[str] | None]:
    """Start `ordersaga serve` on all interfaces, on the port it picks, with `options`; once it says
    which port and answers /healthz over loopback (or has exited), ask an admin's query and stop it.
    Its exit code if it stopped by itself, its output, and the error codes the query got (None when it
    never served)."""
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "serve",
        "--database-url",
        f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    server = ServerProcess(process)
    answered: list[str] | None = None
    exited: int | None = None
    try:
        try:
            port = await server.announced_port()
        except AssertionError:  # it ended without serving (or never said where: stopped below)
            return await asyncio.wait_for(process.wait(), 5), "\n".join(server.output), None
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
        rest = (await asyncio.wait_for(process.communicate(), 30))[0].decode(errors="replace")
    return exited, "\n".join([*server.output, rest]), answered


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
