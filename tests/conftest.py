"""Databases for the tests: SQLite always, PostgreSQL when ORDERSAGA_TEST_POSTGRES_URL names a server.

Each run creates a PostgreSQL database of its own and drops it at the end, so runs never see each
other's leftovers; each test starts from empty, migrated tables on either database. On PostgreSQL
they are emptied through one connection kept for the run. On SQLite the database is copied from one
migrated once per run (a copy costs a millisecond, the migrations about a tenth of a second).
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import functools
import gc
import os
import py_compile
import shutil
import socket
import sys
import threading
import uuid
import zlib
from collections.abc import Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from persistence.database import make_engine
from persistence.migrate import upgrade
from persistence.tables import metadata

# The NATS fixtures (nats_url, stream, nats_server_binary), for the event stream's tests anywhere.
pytest_plugins = ["tests.jetstream", "tests.warm_backends"]
ROOT = Path(__file__).parents[1]
CRASH_TESTS = ROOT / "tests" / "crash"
POSTGRES_ENV = "ORDERSAGA_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "ORDERSAGA_REQUIRE_POSTGRES"
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_REDIS_ENV = "ORDERSAGA_REQUIRE_REDIS"
BACKENDS = ["sqlite", "postgresql"]
T = TypeVar("T")


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run database set-up on an event loop of its own, apart from the tests' loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def execute_sql(url: str, statement: str, **options: Any) -> None:
    """Run `statement` on the database at `url`, on an engine made with `options` for it alone."""
    engine = make_engine(url, **options)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


class _Emptier:
    """Deletes every row of a PostgreSQL database, dependents first, in one query, on one connection
    kept from one emptying to the next, on an event loop of its own thread (apart from the tests'
    loop). A test leaves a few rows, which DELETE removes in a few milliseconds (TRUNCATE makes every
    table anew, about a fifth of a second each test); a new connection each time cost as much CPU
    again, in the client and in the server process PostgreSQL starts for it."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emptier", daemon=True)
        self._thread.start()
        self._engine = make_engine(url, pool_size=1, max_overflow=0)
        # One round trip: the DELETEs in one query string, which PostgreSQL runs as one transaction
        # (statement by statement, through SQLAlchemy, took ten times as long).
        quote = self._engine.dialect.identifier_preparer.format_table
        self._deletes = "; ".join(
            f"DELETE FROM {quote(table)}"
            for table in reversed(metadata.sorted_tables)
            if table.name != "alembic_version"
        )

    def empty(self) -> None:
        self._run(self._delete_every_row())

    def close(self) -> None:
        try:
            self._run(self._engine.dispose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _delete_every_row(self) -> None:
        async with self._engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.execute(self._deletes)

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def pytest_configure(config: pytest.Config) -> None:
    """Where PYTHONDONTWRITEBYTECODE is set, every Python process of a run (the test processes, and
    every `ordersaga` and other Python process they start) compiled the modules it imports from source,
    the project's and the tests' every time and, where the installer wrote no bytecode, the libraries'
    too: several seconds of CPU in each test process, about a tenth of a second in each process
    started. They keep their bytecode in pytest's cache directory instead (PYTHONPYCACHEPREFIX), from
    run to run, so that only the first run after a change compiles; nothing is written beside the
    sources. Set here, before pytest-xdist starts the test processes, so that they inherit it."""
    cache = getattr(config, "cache", None)  # none with `-p no:cacheprovider`
    if cache is None or not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    prefix = str(cache.mkdir("bytecode"))
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    # This process too, for the modules it imports from now on (the test modules, with -n 0).
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile, into the run's bytecode cache (`pytest_configure`) and over the cores the run may
    use, the modules this process has imported and the project's own, before pytest-xdist starts its
    test processes (its own `pytest_sessionstart` runs last). On a fresh checkout those processes all
    import the same modules at the same moment, and each compiled every one of them: the 23 seconds
    before a fresh run's first test were mostly four processes compiling the same files (18 now).
    Files whose bytecode is current are left alone, so a later run compiles only what changed. Test
    modules are not compiled here: pytest compiles them with their assertions rewritten, into files
    of its own. Nor are the libraries only the test modules import (a list of those would go stale);
    each test process compiles those it needs."""
    config = session.config
    if not sys.pycache_prefix or not config.pluginmanager.has_plugin("dsession"):
        return
    imported = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    sources = {Path(file) for file in imported if file and file.endswith(".py")}
    for package in ("api", "benchmarks", "domain", "migrations", "persistence", "tests"):
        sources.update((ROOT / package).rglob("*.py"))
    sources = {path for path in sources if not path.name.startswith("test_") and path.name != "conftest.py"}
    compile_file = functools.partial(
        compileall.compile_file, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP
    )
    cores = min(len(os.sched_getaffinity(0)), config.getoption("numprocesses", None) or 1)
    with ProcessPoolExecutor(cores) as pool:
        # Results unread: a file that fails to compile here is compiled by whichever process imports it.
        pool.map(compile_file, sorted(map(str, sources)), chunksize=64)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis, for the rate limits several processes share; the tests keep to keys of
    their own. Absent, they skip, unless ORDERSAGA_REQUIRE_REDIS is set (CI sets it)."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=1):
        return REDIS_URL
    message = f"the shared rate limit tests need a Redis server at {REDIS_URL}"
    if os.environ.get(REQUIRE_REDIS_ENV):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        message = (
            f"PostgreSQL tests need {POSTGRES_ENV}, a server URL such as "
            "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        )
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(message)
        pytest.skip(message)
    name = f"ordersaga_test_{uuid.uuid4().hex[:12]}"
    run_apart(execute_sql(admin_url, f'CREATE DATABASE "{name}"', isolation_level="AUTOCOMMIT"))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        run_apart(_migrate(url))
        yield url
    finally:
        run_apart(
            execute_sql(
                admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', isolation_level="AUTOCOMMIT"
            )
        )


@pytest.fixture(scope="session")
def postgres_emptier(postgres_url: str) -> Iterator[_Emptier]:
    emptier = _Emptier(postgres_url)
    try:
        yield emptier
    finally:
        emptier.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ordersaga.db"
    run_apart(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of the test's own, with empty tables, at tmp_path/ordersaga.db."""
    path = tmp_path / "ordersaga.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated database with empty tables, on each backend."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    request.getfixturevalue("postgres_emptier").empty()
    url: str = request.getfixturevalue("postgres_url")
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers that follow from what a test uses (`protocol` is marked where Node runs): `browser`
    for a test with Chromium, `crash` for the tests of tests/crash, and `slow` for all of those.

    Slow tests run first, those marked `slow(seconds=N)` before them, longest first: over several
    processes (pytest -n, handing out one test at a time), a test of many seconds handed out last
    would keep one process busy while the others have nothing left to do. Over several processes,
    the quick tests after them are handed out in an order of their own (by a checksum of their ids,
    the same in every process), not file by file: the tests of one file often wait alike (on a
    token's expiry, a timeout), and handed out together they had every process waiting at once, the
    machine idle for 5 to 10 seconds at a time. The slow tests keep their order, in which those that
    ask for answers in time (tests/api/test_fanout_http.py) have passed run after run."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
        if item.path.is_relative_to(CRASH_TESTS):
            item.add_marker(pytest.mark.crash)
        if any(item.get_closest_marker(kind) for kind in ("browser", "crash", "protocol")):
            item.add_marker(pytest.mark.slow)
    # Collection runs in the test processes that pytest-xdist starts (`workerinput`), not its own.
    items.sort(key=functools.partial(_schedule, spread=hasattr(config, "workerinput")))  # stable


def pytest_collection_finish() -> None:
    """What collection made (every module of the project and of the tests, with their classes and
    functions) lives as long as the test process: frozen out of the collector's generations, the
    full collections that the tests' allocations trigger no longer scan it again and again (they
    were about a tenth of a test process's CPU; freezing took a third of that away). Start-up
    freezes the same way in `serve` (Service's `freeze_start_up`), and the collector's first
    threshold is raised as it is there: the suite took 12% less CPU (docs/performance.md, lever 27)."""
    # Imported here, where collection has imported it already: at the top, pytest-xdist's controller,
    # which collects nothing, would import the whole service before it starts the test processes.
    from api.service import SERVING_FIRST_GENERATION_THRESHOLD

    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVING_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def _schedule(item: pytest.Item, spread: bool) -> tuple[bool, float, int]:
    slow = item.get_closest_marker("slow")
    seconds = float(slow.kwargs.get("seconds", 0)) if slow else 0.0
    # The tests of a module with a fixture of its own (a server for the module) stay together, in
    # collection order, so that each process sets it up once rather than for every test.
    together = item.nodeid.split("::")[0] if _shares_a_fixture(item) else item.nodeid
    return slow is None, -seconds, zlib.crc32(together.encode()) if spread and slow is None else 0


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a fixture set up once for its module or class. Read from pytest's
    fixture info (`_fixtureinfo`, private; were it gone, those tests would only be spread too)."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(defs[-1].scope in ("package", "module", "class") for defs in definitions.values())
