"""The database subcommands, `migrate` and `projections rebuild`, and how every subcommand reaches a
database: the --database-url option, and a database that cannot be used said in one line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from api.subcommands.numbers import add_number
from persistence.database import default_database_url, is_sqlite
from persistence.migrate import MigrationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")

# What a database URL that names nothing usable, or a database that does not answer, raises: the URL
# (ArgumentError, a missing driver), the network (OSError; OverflowError for a port past 65535), the
# database itself (DBAPIError), or its migrations (MigrationError: a revision this version does not know).
DATABASE_FAILURES = (SQLAlchemyError, OSError, OverflowError, ImportError, MigrationError)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `migrate` and `projections rebuild` to `commands`."""
    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    add_database_option(migrate)
    migrate.set_defaults(run=_migrate)

    projections = commands.add_parser("projections", help="maintain the read tables")
    projection_commands = projections.add_subparsers(required=True, metavar="COMMAND")
    rebuild = projection_commands.add_parser(
        "rebuild",
        help="replay the journal into fresh read tables and check stock against it (service stopped)",
    )
    add_database_option(rebuild)
    add_number(
        rebuild,
        "--batch-size",
        int,
        least=1,
        # Far more sagas than one transaction should hold in memory at once.
        most=100_000,
        default=500,
        metavar="N",
        help="sagas per transaction (default 500)",
    )
    rebuild.set_defaults(run=_rebuild_projections)


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """--database-url, the database a subcommand works on (None: the default SQLite file)."""
    parser.add_argument(
        "--database-url",
        type=_async_driver,
        default=None,
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db; postgresql:// and sqlite:// "
        "mean their async drivers (default: SQLite, ordersaga.db in the working directory)",
    )


# The URL scheme ordersaga runs each database it knows on, by the names a URL may give the database.
ASYNC_SCHEMES = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def _async_driver(text: str) -> str:
    """The URL `text` on its database's async driver: a URL naming no driver (postgresql://, the
    postgres:// some platforms give, sqlite://) gets the one ordersaga uses, and libpq's `sslmode`
    parameter becomes asyncpg's `ssl` (its other parameters, such as `sslrootcert`, are not
    translated); one naming a blocking driver (psycopg2, pysqlite) ends the
    command with one line giving the URL to use instead, as does one whose port is not a number. Any
    other URL is left as it is, for the database options' own checks to refuse in one line."""
    try:
        url = make_url(text)
    except ArgumentError:
        return text
    except ValueError as error:  # a port that is not a number, several hosts
        sys.exit(f"--database-url: {_without_password(text)} cannot be read: {error}")
    backend, _, driver = url.drivername.partition("+")
    scheme = ASYNC_SCHEMES.get(backend)
    if scheme is None:
        return text
    fitted = url.set(drivername=scheme)
    if "sslmode" in url.query and "ssl" not in url.query and scheme.endswith("asyncpg"):
        fitted = fitted.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    if fitted == url:
        return text
    if driver and driver != scheme.partition("+")[2]:
        shown = fitted.render_as_string(hide_password=True)
        sys.exit(f"--database-url: ordersaga runs on async drivers; {driver} is not one: use {shown}")
    return fitted.render_as_string(hide_password=False)


def _without_password(text: str) -> str:
    """`text`, a URL SQLAlchemy cannot read, with what stands for its password hidden."""
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", text)  # to the last @: a password may hold ? and #


def _migrate(args: argparse.Namespace) -> None:
    from persistence.migrate import current_revision, upgrade

    async def migrate(engine: AsyncEngine) -> tuple[list[str], str | None]:
        applied = await upgrade(engine)
        return [f"applied {m.revision}: {m.doc}" for m in applied], await current_revision(engine)

    applied, revision = on_database(args.database_url or default_database_url(), migrate)
    print("\n".join(applied) if applied else f"database is up to date (revision {revision})")


def _rebuild_projections(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from persistence.codec import UnreadableEvent
    from persistence.migrate import upgrade
    from persistence.read.rebuild import RebuildReport, count_events, rebuild_projections
    from persistence.serving import DatabaseInUse, claim_database

    url = args.database_url or default_database_url()

    async def rebuild(engine: AsyncEngine) -> RebuildReport:
        # Alone: a server's projection would write the read tables while they are rebuilt.
        async with claim_database(url, exclusive=True):
            await upgrade(engine)
            # On a terminal, the events replayed so far, their rate and the time left.
            with tqdm(
                total=await count_events(engine), unit=" events", disable=not sys.stderr.isatty()
            ) as bar:
                return await rebuild_projections(engine, args.batch_size, bar.update)

    try:
        report = on_database(url, rebuild)
    except DatabaseInUse:
        sys.exit("a server is using the database: stop every ordersaga serve on it, then rebuild")
    except UnreadableEvent as unreadable:
        sys.exit(f"the journal holds an event this release cannot read: {unreadable}")
    print(f"rebuilt the read tables from {report.sagas} sagas in {report.batches} batches")
    problems = []
    if report.stock_mismatches:
        lines = "\n".join(f"  {m.describe()}" for m in report.stock_mismatches)
        problems.append(f"stock disagrees with the journal's unreleased reservations:\n{lines}")
    if report.unexplained_stock:
        lines = "\n".join(f"  {u.describe()}" for u in report.unexplained_stock)
        problems.append(f"stock disagrees with its movements:\n{lines}")
    if problems:
        sys.exit("\n".join(problems))
    print("stock agrees with the journal and with its movements")


def on_database(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` on an engine for `url`. A URL that names no usable database, or a database that
    cannot be reached, ends the command with one line saying so (exit status 1), not a traceback."""
    from persistence.database import make_engine

    async def run() -> T:
        engine = make_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with database_failures_in_one_line(url):
        _check_sqlite_directory(url)
        return asyncio.run(run())


@contextlib.contextmanager
def database_failures_in_one_line(url: str) -> Iterator[None]:
    """Ends the command with one line (exit status 1) when the block fails for want of a usable
    database at `url`, not with a traceback."""
    try:
        yield
    except DATABASE_FAILURES as failure:
        sys.exit(f"cannot use the database {_shown(url)}: {_reason(failure)}")


def _check_sqlite_directory(url: str) -> None:
    # Said plainly here; SQLite itself only says "unable to open database file".
    if is_sqlite(url) and (database := make_url(url).database) and database != ":memory:":
        directory = Path(database).parent
        if not directory.is_dir():
            raise OSError(f"no directory {directory} to hold the SQLite database")


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return repr(_without_password(url))


def _reason(failure: BaseException) -> str:
    """The first line of what went wrong, without SQLAlchemy's wrapping (statement, parameters, link)."""
    cause = failure.orig if isinstance(failure, DBAPIError) and failure.orig is not None else failure
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
