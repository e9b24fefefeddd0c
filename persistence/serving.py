"""Who is using a database: every server holds a shared claim on it while it runs, and work that must
run alone (`ordersaga projections rebuild`) takes the claim exclusively, or is refused. A claim dies
with the process that holds it, so a crashed server leaves no claim behind.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock_shared` for servers,
  `pg_try_advisory_lock` for exclusive work) on a connection kept open, outside any transaction, for
  as long as the claim lasts. Advisory locks are per database, so databases on one server do not
  meet.
- SQLite: `flock` on a file beside the database (`<database>-serving.lock`); SQLite's own locks are
  per transaction and cannot say that a process has the database open. An in-memory database
  belongs to one process and needs no claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from persistence.database import is_sqlite

# The advisory lock's key: "ordersag" in ASCII, a 64-bit number no other user of the database is
# likely to pick.
ADVISORY_KEY = int.from_bytes(b"ordersag", "big")


class DatabaseInUse(Exception):
    """The claim is held in a way that excludes the one asked for."""


@contextlib.asynccontextmanager
async def claim_database(url: str, *, exclusive: bool) -> AsyncIterator[None]:
    """Hold a claim on the database at `url` for the block: shared (servers) or exclusive. Raises
    DatabaseInUse at once, without waiting, when it cannot be had."""
    if is_sqlite(url):
        database = make_url(url).database
        if not database or database == ":memory:":
            yield
            return
        with _file_lock(Path(f"{database}-serving.lock"), exclusive):
            yield
        return
    async with _advisory_lock(url, exclusive):
        yield


@contextlib.contextmanager
def _file_lock(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold a flock on `path` for the block, and remove the file when the last holder lets go.

    Removing a lock file races with its next taker: one that opened the file just before it was
    removed locks a file no longer at `path`, while a third creates and locks a new one. So a lock
    counts only while `path` still names the locked file, and a taker that finds otherwise tries
    again; and the file is removed only by a holder that can take it exclusively, before it lets go."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise DatabaseInUse(path) from None
        if _names(path, descriptor):
            break
        os.close(descriptor)  # removed by its last holder meanwhile: take the one at `path` now
    try:
        yield
    finally:
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while others share it
            path.unlink(missing_ok=True)
        os.close(descriptor)  # releases the lock


def _names(path: Path, descriptor: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


@contextlib.asynccontextmanager
async def _advisory_lock(url: str, exclusive: bool) -> AsyncIterator[None]:
    # A pool of its own, so the claim's connection is neither lent out nor counted against the
    # service's pool; closed, it ends the session and with it the lock.
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            function = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
            if not await connection.scalar(text(f"SELECT {function}(:key)"), {"key": ADVISORY_KEY}):
                raise DatabaseInUse(url)
            yield
    finally:
        await engine.dispose()
