"""The four-step order saga written idiomatically on DBOS Transact 3.x, in two variants.

Steps: create order -> reserve stock (compare-and-swap on a versioned row) ->
confirm order -> create shipment.  A business failure after the order exists
runs the compensations in reverse (release stock, cancel order), so the saga
ends FAILED with its stock back on the shelf.

``datasource`` (the peer at its best, and the fair comparison): every database
step is a *datasource transaction* (``@ds.transaction()``).  DBOS 3 removed
``@DBOS.transaction()`` together with the application database and recommends
datasources for steps that write to an application database, because the
step's own writes and its DBOS checkpoint (a row in ``datasource_outputs``)
commit in one transaction: the step runs exactly once even if the process dies
between the write and the checkpoint.  That is the guarantee our own engine
gives (a step's effect and its journal entry commit together).

``plain``: every step is a ``@DBOS.step()`` that writes in a transaction of its
own, and DBOS checkpoints its result afterwards in the system database.  Cheaper
(no checkpoint table in the application database, no SERIALIZABLE transaction),
but a crash between a step's commit and its checkpoint runs the step again on
recovery: at-least-once, which a reservation or a shipment would have to make
idempotent by hand.  It is measured beside the other so that the gap is visible.

Both the application database and DBOS's system database are SQLite files in WAL
mode with ``synchronous=FULL`` (or PostgreSQL databases, with its defaults).
DBOS only sets ``busy_timeout``/``foreign_keys`` and ``BEGIN IMMEDIATE`` on its
own SQLite connections (leaving SQLite's default rollback journal), so we hand
it engines built here that add the two durability pragmas and otherwise match
what DBOS would have done.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, TypeVar, cast

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetWorkflowID, SQLAlchemyDatasource

T = TypeVar("T")
Variant = Literal["datasource", "plain"]
VARIANTS: tuple[Variant, ...] = ("datasource", "plain")

# A version clash means another saga reserved the same SKU between our read and
# our write (under SQLite the retry runs holding the write lock, so the second
# attempt cannot clash again). On PostgreSQL, a hot SKU under 64 workflows at
# once made five plain re-reads run out and fail orders that had stock, so each
# re-read waits a jittered moment longer, and as many tries are allowed as
# ordersaga's reservation gets (5 in each of its step's 3 attempts).
CAS_ATTEMPTS = 15
CAS_BACKOFF_S = 0.002

APP_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stock (
        sku TEXT PRIMARY KEY,
        on_hand INTEGER NOT NULL,
        available INTEGER NOT NULL,
        reserved INTEGER NOT NULL,
        version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS orders (
        order_id TEXT PRIMARY KEY,
        sku TEXT NOT NULL REFERENCES stock(sku),
        quantity INTEGER NOT NULL,
        status TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS shipments (
        order_id TEXT PRIMARY KEY REFERENCES orders(order_id),
        sku TEXT NOT NULL,
        quantity INTEGER NOT NULL)""",
)

SELECT_STOCK = sa.text("SELECT available, version FROM stock WHERE sku = :sku")
RESERVE = sa.text(
    "UPDATE stock SET available = available - :q, reserved = reserved + :q,"
    " version = version + 1"
    " WHERE sku = :sku AND version = :v AND available >= :q"
)
# A compensation must not fail on a clash, so it adjusts the counts atomically;
# bumping the version still makes concurrent reservers re-read.
RELEASE = sa.text(
    "UPDATE stock SET available = available + :q, reserved = reserved - :q,"
    " version = version + 1 WHERE sku = :sku"
)
INSERT_ORDER = sa.text(
    "INSERT INTO orders (order_id, sku, quantity, status) VALUES (:order_id, :sku, :q, 'PENDING')"
)
SET_STATUS = sa.text("UPDATE orders SET status = :new WHERE order_id = :order_id AND status = :old")
CANCEL = sa.text("UPDATE orders SET status = 'CANCELLED' WHERE order_id = :order_id")
INSERT_SHIPMENT = sa.text("INSERT INTO shipments (order_id, sku, quantity) VALUES (:order_id, :sku, :q)")


class BusinessError(Exception):
    """A step refusing on business grounds: compensate, never retry."""


class OutOfStock(BusinessError):
    pass


class ReservationContended(BusinessError):
    pass


class OrderInput(TypedDict):
    order_id: str
    sku: str
    quantity: int
    # Decided by the driver up front so the expected outcome of each saga is known.


class SagaResult(TypedDict):
    order_id: str
    status: Literal["COMPLETED", "FAILED"]
    cas_conflicts: int
    reason: str | None


@dataclass
class SqlCounter:
    """Counts statements and durable commits on the engines it is attached to.

    On SQLite a commit counts only when the connection really has a transaction
    open: pysqlite opens one lazily at the first write, so committing a read-only
    SQLAlchemy transaction costs no fsync and is not counted.
    """

    commits: int = 0
    statements: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self, engine: sa.Engine) -> None:
        @sa.event.listens_for(engine, "before_cursor_execute")
        def _statement(*_: Any) -> None:
            with self._lock:
                self.statements += 1

        @sa.event.listens_for(engine, "commit")
        def _commit(conn: sa.Connection) -> None:
            dbapi = conn.connection.dbapi_connection
            # sqlite3 tells whether a transaction is open; PostgreSQL flushes nothing for a
            # read-only one, but psycopg does not say, so there every commit counts.
            if dbapi is not None and getattr(dbapi, "in_transaction", True):
                with self._lock:
                    self.commits += 1

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.commits, self.statements


def engine(url: str, pool_size: int) -> sa.Engine:
    """A synchronous engine on `url` (a SQLite file or a PostgreSQL database)."""
    made = sa.create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
    if made.dialect.name != "sqlite":
        return made

    @sa.event.listens_for(made, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # The first three are what DBOS sets on the SQLite engines it creates.
        # (Inside a datasource transaction SQLAlchemy's isolation_level option
        # resets IMMEDIATE to a deferred BEGIN; pysqlite only begins at the first
        # write anyway, which is why reserve_stock's read needs the version check.)
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        # WAL persists in the file; synchronous is per connection and FULL makes
        # every commit fsync the WAL, the same durability our engine is held to.
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    return made


class Sql(Protocol):
    """A Session or a Connection: all a step body needs."""

    def execute(self, statement: sa.Executable, parameters: Any = None) -> Any: ...


def create_order(db: Sql, order_id: str, sku: str, quantity: int) -> None:
    db.execute(INSERT_ORDER, {"order_id": order_id, "sku": sku, "q": quantity})


def reserve_stock(db: Sql, sku: str, quantity: int) -> int:
    """Reserve by compare-and-swap; returns how many version clashes it rode out."""
    for clashes in range(CAS_ATTEMPTS):
        if clashes:
            time.sleep(random.uniform(0, CAS_BACKOFF_S * clashes))
        available, version = db.execute(SELECT_STOCK, {"sku": sku}).one()
        if available < quantity:
            raise OutOfStock(f"{sku}: {available} available, {quantity} wanted")
        swapped = db.execute(RESERVE, {"sku": sku, "q": quantity, "v": version})
        if cast("sa.CursorResult[Any]", swapped).rowcount == 1:
            return clashes
    raise ReservationContended(f"{sku}: {CAS_ATTEMPTS} version clashes")


def confirm_order(db: Sql, order_id: str) -> None:
    db.execute(SET_STATUS, {"order_id": order_id, "old": "PENDING", "new": "CONFIRMED"})


def create_shipment(db: Sql, order_id: str, sku: str, quantity: int) -> None:
    db.execute(INSERT_SHIPMENT, {"order_id": order_id, "sku": sku, "q": quantity})
    db.execute(SET_STATUS, {"order_id": order_id, "old": "CONFIRMED", "new": "SHIPPED"})


def release_stock(db: Sql, sku: str, quantity: int) -> None:
    db.execute(RELEASE, {"sku": sku, "q": quantity})


def cancel_order(db: Sql, order_id: str) -> None:
    db.execute(CANCEL, {"order_id": order_id})


STEP_BODIES = (create_order, reserve_stock, confirm_order, create_shipment, release_stock, cancel_order)


def as_steps(variant: Variant, app_engine: sa.Engine) -> dict[str, Callable[..., Any]]:
    """Each step body registered with DBOS as the variant says, by its own name."""
    if variant == "datasource":
        ds = SQLAlchemyDatasource.create(app_engine.url.render_as_string(False), engine=app_engine)
        decorate: Callable[[Callable[..., Any]], Callable[..., Any]] = ds.transaction()

        def run(body: Callable[..., T], args: tuple[Any, ...]) -> T:
            return body(ds.sql_session(), *args)

    else:
        decorate = DBOS.step()

        def run(body: Callable[..., T], args: tuple[Any, ...]) -> T:
            with app_engine.begin() as conn:
                return body(conn, *args)

    def register(body: Callable[..., T]) -> Callable[..., T]:
        def step(*args: Any) -> T:
            return run(body, args)

        # DBOS knows a step by its qualified name, so each needs its own.
        step.__name__ = step.__qualname__ = body.__name__
        return decorate(step)

    return {body.__name__: register(body) for body in STEP_BODIES}


@dataclass
class Peer:
    app_engine: sa.Engine
    sys_engine: sa.Engine
    app_counter: SqlCounter
    sys_counter: SqlCounter
    order_saga: Callable[[OrderInput], SagaResult]

    def run(self, order: OrderInput) -> SagaResult:
        """Start the saga under its order id as idempotency key and wait for it."""
        with SetWorkflowID(order["order_id"]):
            handle = DBOS.start_workflow(self.order_saga, order)
        return handle.get_result()

    def run_inline(self, order: OrderInput) -> SagaResult:
        """Run the workflow on the calling thread (no hand-off to DBOS's executor)."""
        with SetWorkflowID(order["order_id"]):
            return self.order_saga(order)

    def shutdown(self) -> None:
        DBOS.destroy()
        self.app_engine.dispose()
        self.sys_engine.dispose()


def build(
    app_url: str, system_url: str, stock: dict[str, int], variant: Variant = "datasource", pool_size: int = 20
) -> Peer:
    """Seed stock in the (fresh, empty) application database, register and launch the saga.

    DBOS keeps global state, so call this once per process.
    """
    app_engine = engine(app_url, pool_size)
    sys_engine = engine(system_url, pool_size)

    with app_engine.begin() as conn:
        for ddl in APP_SCHEMA:
            conn.execute(sa.text(ddl))
        conn.execute(
            sa.text(
                "INSERT INTO stock (sku, on_hand, available, reserved, version) VALUES (:sku, :n, :n, 0, 0)"
            ),
            [{"sku": sku, "n": n} for sku, n in stock.items()],
        )

    step = as_steps(variant, app_engine)

    @DBOS.workflow()
    def order_saga(order: OrderInput) -> SagaResult:
        order_id, sku, quantity = order["order_id"], order["sku"], order["quantity"]
        step["create_order"](order_id, sku, quantity)
        try:
            conflicts = step["reserve_stock"](sku, quantity)
        except BusinessError as e:
            step["cancel_order"](order_id)
            return SagaResult(order_id=order_id, status="FAILED", cas_conflicts=0, reason=str(e))
        try:
            step["confirm_order"](order_id)
            step["create_shipment"](order_id, sku, quantity)
        except BusinessError as e:
            # Undo in reverse order of the steps that succeeded.
            step["release_stock"](sku, quantity)
            step["cancel_order"](order_id)
            return SagaResult(order_id=order_id, status="FAILED", cas_conflicts=conflicts, reason=str(e))
        return SagaResult(order_id=order_id, status="COMPLETED", cas_conflicts=conflicts, reason=None)

    config: DBOSConfig = {
        "name": "ordersaga-peer",
        "system_database_engine": sys_engine,
        # Per-step INFO logging would be measured as engine cost.
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    # Attached after setup so migrations and seeding are not counted.
    app_counter, sys_counter = SqlCounter(), SqlCounter()
    app_counter.attach(app_engine)
    sys_counter.attach(sys_engine)
    return Peer(app_engine, sys_engine, app_counter, sys_counter, order_saga)
