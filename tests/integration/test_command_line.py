"""The `ordersaga` command as a user meets it, run as real processes: database failures in one line,
what `migrate` applied, the GraphiQL URL once the port is bound, a rebuild that waits for no server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.service import Service
from api.settings import Settings
from persistence.database import is_sqlite
from persistence.serving import DatabaseInUse, claim_database
from tests.api.server import TLS
from tests.crash import preloaded
from tests.crash.server_process import ORDERSAGA, ordersaga_serve

COMMAND_SECONDS = 60
pytestmark = pytest.mark.slow  # most run `ordersaga` processes


async def ordersaga(*args: str) -> tuple[int, str, str]:
    """Run `ordersaga args...` to its end: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(COMMAND_SECONDS):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def ordersaga_forked(*args: str) -> tuple[int, str, str]:
    """`ordersaga args...` as `ordersaga` above, forked from a process that has imported the command
    (tests/crash/preloaded.py): for the tests that run it a dozen times, at about a second of CPU
    less each."""
    process = await preloaded.start(args, os.environ, Path.cwd(), stderr_apart=True)
    assert process.stderr is not None
    try:
        async with asyncio.timeout(COMMAND_SECONDS):
            stdout, stderr = await asyncio.gather(_text(process.stdout), _text(process.stderr))
            return await process.wait(), stdout, stderr
    finally:
        await process.kill()  # one that overran its time; a no-op for one that has ended


async def _text(lines: AsyncIterator[bytes]) -> str:
    return b"".join([line async for line in lines]).decode()


def assert_one_line_failure(status: int, stderr: str, *words: str) -> None:
    assert status != 0
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith("cannot use the database") and all(w in line for w in words), line


BAD_DATABASES = [
    ("not a url", "Could not parse"),
    ("sqlite+aiosqlite:////no/such/directory/ordersaga.db", "no directory /no/such/directory"),
    ("mysql://ordersaga@127.0.0.1/ordersaga", "No module named 'MySQLdb'"),
    ("postgresql+asyncpg://postgres:secret@127.0.0.1:9/ordersaga", "Connect call failed"),
]


async def test_a_bad_or_unreachable_database_is_one_line_and_a_failure_for_every_command(
    tmp_path: Path,
) -> None:
    newer = tmp_path / "newer.db"  # migrated by a version of ordersaga that knows a later revision
    with contextlib.closing(sqlite3.connect(newer)) as db, db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('9999')")
    newer_url = f"sqlite+aiosqlite:///{newer}"
    runs = [
        (command, url, says)
        for command in ("migrate", "serve --port=0", "projections rebuild")
        for url, says in BAD_DATABASES
    ]
    unknown = "revision identified by '9999'"
    runs += [(command, newer_url, unknown) for command in ("migrate", "serve --port=0")]
    results = await asyncio.gather(
        *(ordersaga_forked(*command.split(), "--database-url", url) for command, url, _ in runs)
    )
    for (_, _, says), (status, stdout, stderr) in zip(runs, results, strict=True):
        assert_one_line_failure(status, stderr, says)
        assert stdout == "" and "secret" not in stderr


# A command line with a number that is NaN, infinite or out of bounds, and what its refusal says.
NUMBERS_REFUSED = [
    ("serve --port=0 --webhook-timeout=nan", "--webhook-timeout must be more than 0 seconds"),
    ("serve --port=0 --webhook-timeout=inf", "--webhook-timeout must be more than 0 seconds"),
    ("serve --port=0 --webhook-retry-for=1e300", "--webhook-retry-for must be more than 0 seconds"),
    ("serve --port=0 --webhook-disable-after=nan", "--webhook-disable-after must be more than 0 seconds"),
    ("serve --port=0 --webhook-connect-timeout=nan", "--webhook-connect-timeout must be more than 0 seconds"),
    ("serve --port=0 --reserve-timeout=-inf", "--reserve-timeout must be more than 0 seconds"),
    ("serve --port=70000", "--port must be at least 0 and at most 65535"),
    ("token --subject=c --role=admin --ttl=inf", "--ttl must be more than 0 seconds"),
    ("projections rebuild --batch-size=0", "--batch-size must be at least 1"),
]


async def test_a_number_option_that_is_not_finite_or_out_of_bounds_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ordersaga.db"
    url = f"--database-url=sqlite+aiosqlite:///{database}"
    results = await asyncio.gather(
        *(
            ordersaga_forked(*command.split(), *([url] if "token" not in command else []))
            for command, _ in NUMBERS_REFUSED
        )
    )
    for (command, says), (status, stdout, stderr) in zip(NUMBERS_REFUSED, results, strict=True):
        assert (status, stdout) == (1, ""), command
        [line] = stderr.splitlines()
        assert line.startswith(says), (command, line)
    assert not database.exists()


async def test_migrate_says_what_it_applied_and_up_to_date_only_when_it_is(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    status, first, _ = await ordersaga("migrate", "--database-url", url)
    assert status == 0
    assert first.splitlines()[0] == "applied 0001: initial schema"
    assert "up to date" not in first

    status, again, _ = await ordersaga("migrate", "--database-url", url)
    last = first.splitlines()[-1].removeprefix("applied ").split(":")[0]
    assert (status, again) == (0, f"database is up to date (revision {last})\n")


async def test_the_graphiql_and_console_urls_are_printed_once_the_port_is_bound(tmp_path: Path) -> None:
    database = tmp_path / "ordersaga.db"
    claim = tmp_path / "ordersaga.db-serving.lock"
    process = await asyncio.create_subprocess_exec(
        str(ORDERSAGA),
        "serve",
        "--port=0",  # the printed URLs tell which port it got
        f"--database-url=sqlite+aiosqlite:///{database}",
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(COMMAND_SECONDS):
            graphiql = (await process.stdout.readline()).decode().strip()
            console = (await process.stdout.readline()).decode().strip()
        assert graphiql.startswith("GraphiQL: http://127.0.0.1:") and graphiql.endswith("/graphql")
        assert console == graphiql.replace("GraphiQL: ", "Console: ").replace("/graphql", "/dashboard")
        async with httpx.AsyncClient(follow_redirects=True, verify=TLS) as http:  # at once: no retry, no wait
            page = await http.get(graphiql.removeprefix("GraphiQL: "), headers={"accept": "text/html"})
            assert page.status_code == 200 and "graphiql" in page.text.lower()
            page = await http.get(console.removeprefix("Console: "))
            assert page.status_code == 200 and "<html" in page.text.lower()
        assert claim.exists()  # the claim, while it serves
    finally:
        process.terminate()
        await process.wait()
    assert not claim.exists()  # a stopped server leaves nothing behind


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_port_taken_is_said_in_one_line_before_any_database_is_made(
    tmp_path: Path, workers: int
) -> None:
    database = tmp_path / "ordersaga.db"
    # --workers needs PostgreSQL, and the port is refused before the database is reached: this one
    # does not exist.
    url = f"sqlite+aiosqlite:///{database}" if workers == 1 else "postgresql://nobody@127.0.0.1:1/none"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stdout, stderr = await ordersaga(
            "serve", f"--port={port}", f"--database-url={url}", f"--workers={workers}"
        )
    assert (status, stdout) == (1, "")
    assert stderr.strip() == f"cannot serve on 127.0.0.1:{port}: Address already in use"
    assert not database.exists() and not os.listdir(tmp_path)  # no database made, no claim left


async def test_rebuild_refuses_while_a_server_uses_the_database(database_url: str) -> None:
    async with ordersaga_serve(database_url) as server:
        status, stdout, stderr = await ordersaga("projections", "rebuild", "--database-url", database_url)
        assert status != 0 and stdout == ""
        assert stderr.strip() == (
            "a server is using the database: stop every ordersaga serve on it, then rebuild"
        )
        await server.kill()  # SIGKILL: a crashed server leaves no claim behind

    status, stdout, _ = await ordersaga("projections", "rebuild", "--database-url", database_url)
    assert status == 0 and "stock agrees with the journal" in stdout


async def test_a_server_does_not_start_while_a_rebuild_has_the_database(database_url: str) -> None:
    svc = Service(Settings(database_url=database_url))
    async with claim_database(database_url, exclusive=True):
        with pytest.raises(DatabaseInUse):
            await svc.start()
        status, stdout, stderr = await ordersaga("serve", "--port=0", "--database-url", database_url)
    await svc.stop()
    assert status != 0 and "GraphiQL" not in stdout
    if is_sqlite(database_url):  # a SQLite database is served by one process at a time
        assert "is already served by another ordersaga process (or rebuilt)" in stderr
    else:
        assert stderr.strip() == "a projections rebuild is using the database: serve once it has finished"


async def test_servers_share_a_postgresql_database_and_take_a_sqlite_one_alone(database_url: str) -> None:
    first, second = Service(Settings(database_url=database_url)), Service(Settings(database_url=database_url))
    await first.start()
    try:
        if is_sqlite(database_url):  # one process drives every saga there
            with pytest.raises(DatabaseInUse):
                await second.start()
        else:
            await second.start()
        await second.stop()
    finally:
        await first.stop()
    async with claim_database(database_url, exclusive=True):
        pass  # both gone, so the database is free again


async def test_a_sqlite_claim_file_lasts_as_long_as_its_last_holder(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ordersaga.db'}"
    claim = tmp_path / "ordersaga.db-serving.lock"
    async with claim_database(url, exclusive=False), claim_database(url, exclusive=False):
        pass
    assert not claim.exists()
    async with claim_database(url, exclusive=False):
        async with claim_database(url, exclusive=False):
            assert claim.exists()
        assert claim.exists()  # still held by the first
        with pytest.raises(DatabaseInUse):
            async with claim_database(url, exclusive=True):
                pass
    assert not claim.exists()
