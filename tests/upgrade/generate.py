"""Write the databases a released version leaves behind, on SQLite and on PostgreSQL, by running that
version's own code: its source is taken from git, served with this checkout's dependencies, given
`tests/upgrade/load.py`'s orders over HTTP, and killed with SIGKILL while some sagas are mid-way.

    .venv/bin/python -m tests.upgrade.generate 0.1.0 6cab561^
    .venv/bin/python -m tests.upgrade.generate 0.2.0 d0e1c7e

Run it once per release, with the release's version and commit, and with a PostgreSQL server in
ORDERSAGA_TEST_POSTGRES_URL (or --postgres-url); commit what it writes to
`databases/<version>/`: `sqlite.db.gz` (the file, compacted), `postgresql.sql.gz` (pg_dump's plain
SQL, rows as INSERTs, so that it restores without psql), both gzipped, and one manifest per database
(`sqlite.json`, `postgresql.json`: every idempotency key with its caller, request, order, saga and
what became of it). `tests/upgrade/test_upgrade.py` finds every release's directory by itself and
holds the current code to upgrading it. A written release is never rewritten: it is what that
release left in a database.

Whether the release authenticates (and takes leases, on PostgreSQL) is read from its own
`serve --help`, so the same load runs on every release. Should a later release change the API the
load speaks, give `load.py` the new form for that release, and keep the old one for the old.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import uuid
from pathlib import Path

from tests.api.tokens import SECRET
from tests.conftest import POSTGRES_ENV
from tests.crash.server_process import serve_process
from tests.upgrade.load import RECEIVED, SHIPMENT_TIMEOUT_S, Callers, load
from tests.upgrade.releases import DATABASES, DUMPS, create_database, drop_database, libpq

REPOSITORY = Path(__file__).parents[2]
# The release's own `ordersaga` command, run from its source (0.1.0's module has no __main__ guard).
ORDERSAGA = [sys.executable, "-c", "import sys; from api.cli import main; main(sys.argv[1:])"]


def release_source(commit: str, into: Path) -> str:
    """Unpack the release's tree at `commit` into `into`; answer its version."""
    tree = subprocess.run(["git", "archive", commit], cwd=REPOSITORY, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tree.stdout)) as archive:
        archive.extractall(into, filter="data")
    project = tomllib.loads((into / "pyproject.toml").read_text())
    return str(project["project"]["version"])


def serve_options(source: Path, scratch: Path) -> list[str]:
    """What the release is served with: its own help says which options it has."""
    help_text = subprocess.run(
        [*ORDERSAGA, "serve", "--help"], cwd=source, env=_env(source), capture_output=True, text=True
    ).stdout
    options = ["--enable-fault-injection", f"--shipment-timeout={SHIPMENT_TIMEOUT_S}"]
    if "--auth-secret-file" in help_text:
        secret = scratch / "secret"
        secret.write_text(SECRET)
        options.append(f"--auth-secret-file={secret}")
    if "--lease-ttl" in help_text:
        options.append("--lease-ttl=2")  # so that the next release takes the unfinished sagas at once
    return options


async def record(source: Path, url: str, options: list[str]) -> list[dict[str, object]]:
    """Serve the release on `url`, load it, and kill it mid-way; answer the manifest's placements."""
    authenticated = any(option.startswith("--auth-secret-file") for option in options)
    spawn = {"cwd": source, "env": _env(source)}
    async with serve_process(ORDERSAGA, url, *options, **spawn) as server:
        placed = await load(Callers(server.gql.http, authenticated))
        await server.kill()
    return placed


def _env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source)}


def save_sqlite(path: Path, into: Path) -> None:
    """Copy the database (its write-ahead log folded in) into one small file, compressed."""
    copy = path.with_suffix(".copy")
    written, kept = sqlite3.connect(path), sqlite3.connect(copy)
    try:
        written.backup(kept)
        kept.executescript("PRAGMA journal_mode = DELETE; PRAGMA page_size = 1024; VACUUM;")
    finally:
        written.close()
        kept.close()
    into.write_bytes(gzip.compress(copy.read_bytes(), mtime=0))


def save_postgresql(url: str, into: Path) -> None:
    """pg_dump's plain SQL of the database, compressed, without psql's own commands (`\\restrict`):
    SQL that any client runs."""
    dump = ["pg_dump", "--no-owner", "--no-privileges", "--inserts", f"--dbname={libpq(url)}"]
    lines = subprocess.run(dump, capture_output=True, text=True, check=True).stdout.splitlines(True)
    sql = "".join(line for line in lines if not line.startswith("\\"))
    into.write_bytes(gzip.compress(sql.encode(), mtime=0))


def write_release(version: str, commit: str, postgres_url: str) -> None:
    release = DATABASES / version
    if release.exists():
        raise SystemExit(f"{release} exists: a release's databases are never rewritten")
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        source = scratch / "source"
        found = release_source(commit, source)
        if found != version:
            raise SystemExit(f"{commit} is version {found}, not {version}")
        options = serve_options(source, scratch)
        release.mkdir(parents=True)
        written = scratch / "written.db"
        placed = asyncio.run(record(source, f"sqlite+aiosqlite:///{written}", options))
        save_sqlite(written, release / DUMPS["sqlite"])
        _manifest(release / "sqlite.json", version, commit, placed)
        name = f"ordersaga_release_{uuid.uuid4().hex[:12]}"
        url = asyncio.run(create_database(postgres_url, name))
        try:
            placed = asyncio.run(record(source, url, options))
            save_postgresql(url, release / DUMPS["postgresql"])
            _manifest(release / "postgresql.json", version, commit, placed)
        finally:
            asyncio.run(drop_database(postgres_url, name))


def _manifest(path: Path, version: str, commit: str, placed: list[dict[str, object]]) -> None:
    manifest = {"release": version, "commit": commit, "received": RECEIVED, "placements": placed}
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="the release's version, as its pyproject.toml says")
    parser.add_argument("commit", help="the release's commit (or tag)")
    parser.add_argument(
        "--postgres-url", default=os.environ.get(POSTGRES_ENV), help=f"default ${POSTGRES_ENV}"
    )
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error(f"a PostgreSQL server is needed: --postgres-url or {POSTGRES_ENV}")
    write_release(args.version, args.commit, args.postgres_url)


if __name__ == "__main__":
    main()
