"""The hot statements of a saga's steps, sent straight to the driver: sqlite3 or asyncpg.

Every saga runs the same dozen statements (its participants' reads and writes, and the journal and
read-model rows each commit sends), and running them through SQLAlchemy cost about three times what
sqlite3 spends on them on SQLite, and on PostgreSQL about as much again as asyncpg spends: an
execution context per call (on asyncpg, a greenlet hop too), each parameter of each row processed
through several layers, a result object wrapped around the cursor. A `Prepared` statement is still
written in SQLAlchemy Core, so its SQL, its types' conversions (UTC datetimes, JSON) and the tables it
names are the ones everything else uses; what it skips is the per-call machinery. It is compiled once
per dialect and set of parameter names (and per length of each expanding IN list), its parameters are
converted by the same processors SQLAlchemy would apply, and the driver runs it: sqlite3 keeps the
prepared statement in its own per-connection cache (`run`); on PostgreSQL (`run_async`) it runs on a
cursor of SQLAlchemy's asyncpg adaptor under the transaction's connection, whose per-connection cache
of asyncpg prepared statements, and whose transaction, it shares with what SQLAlchemy runs there; a
batch is asyncpg's executemany, one pipelined round trip. Errors come back as SQLAlchemy's exceptions
(on PostgreSQL through SQLAlchemy's own handling, so a lost connection is invalidated as there), so
callers catch the same `IntegrityError` or `DBAPIError`, with the same SQLSTATE and constraint name,
on either path.

The writers take this path (`persistence/connection.py`'s `BlockingDb` on SQLite, `AsyncDb` on
PostgreSQL) only with the fast paths on (`Settings.fast_paths`): it leans on SQLAlchemy's internals
(the compiler's `positiontup`, `binds`, prefetch lists and `__[POSTCOMPILE_name]` placeholder; the
asyncpg adaptor's cursor coroutines; `Connection._handle_dbapi_exception`; docs/library-internals.md).
Otherwise the statement runs through SQLAlchemy like any other.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select, TextualSelect

Processor = Callable[[Any], Any] | None
# An INSERT, UPDATE or DELETE, a SELECT, or SQL written out whose result columns are declared
# (`text(...).columns(...)`).
Statement = UpdateBase | Select[Any] | TextualSelect
PARAMSTYLES = ("qmark", "numeric_dollar")  # sqlite3's `?`, asyncpg's `$1`


class Rows(Protocol):
    """What running a statement gives its caller, on either path: its rows and how many it changed
    (-1 for a batch on asyncpg, which counts none: `dialect.supports_sane_multi_rowcount`)."""

    @property
    def rowcount(self) -> int: ...
    def first(self) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Prepared:
    """A statement (a module-level constant) to run on the driver directly; see the module's note.

    Its bind parameters are given by key as usual; a parameter made with `bindparam(expanding=True)`
    takes a non-empty sequence. Rows read come back as named tuples whose fields are the statement's
    column keys, their values converted as SQLAlchemy converts them."""

    def __init__(self, statement: Statement, dialect: str | None = None) -> None:
        """`dialect`: the one database the statement is written for (its name, "postgresql"), or
        None for any; running it on another raises ValueError."""
        self.statement = statement
        self.dialect = dialect
        self._forms: dict[tuple[str, ...], _Form] = {}  # by dialect, driver and parameter names

    def run(self, cursor: sqlite3.Cursor, dialect: Dialect, parameters: Any = None) -> Rows:
        """Run the statement on `cursor` (one row of parameters, a list of rows for executemany,
        or None). Raises SQLAlchemy's DBAPIError subclasses for the driver's errors."""
        many = isinstance(parameters, list)
        rows: list[Mapping[str, Any]] = parameters if many else [parameters or {}]
        form = self._form(dialect, tuple(rows[0]))
        sql, values = form.bind(rows)
        try:
            if many:
                cursor.executemany(sql, values)
            else:
                cursor.execute(sql, values[0])
            fetched = cursor.fetchall() if form.columns is not None else []
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql, values, error, sqlite3.Error, dialect=dialect) from error
        # sqlite3 sums the rows each execution of an executemany changed (its rowcount is -1 for a
        # SELECT), so a batch's rowcount is as sane as a single statement's.
        return _Fetched(form.read(fetched), cursor.rowcount)

    async def run_async(self, conn: AsyncConnection, cursor: Any, parameters: Any = None) -> Rows:
        """Run the statement on PostgreSQL: on `cursor`, a cursor of the asyncpg adaptor underneath
        `conn` (whose transaction it joins, beginning it if no statement has yet), with `parameters`
        as for `run`. A batch is asyncpg's executemany, one pipelined round trip; its rowcount is -1,
        as SQLAlchemy's is on asyncpg (`supports_sane_multi_rowcount`). Raises what SQLAlchemy would
        raise for the driver's error, `conn` invalidated as SQLAlchemy invalidates it."""
        dialect = conn.dialect
        many = isinstance(parameters, list)
        rows: list[Mapping[str, Any]] = parameters if many else [parameters or {}]
        form = self._form(dialect, tuple(rows[0]))
        sql, values = form.bind(rows)
        # The schema's generation SQLAlchemy hands each cursor, so that statements asyncpg prepared
        # before a change of types are prepared again.
        cursor._invalidate_schema_cache_asof = getattr(dialect, "_invalidate_schema_cache_asof", 0)
        try:
            if many:
                await cursor._executemany(sql, values)
                return _Fetched([], -1)
            await cursor._prepare_and_execute(sql, values[0])
        except dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's own handling of a driver error: the exception class by the error's kind,
            # the connection invalidated (and the pool's older ones) when the error says it is lost.
            await conn.run_sync(_raise_as_sqlalchemy, error, sql, values)
            raise  # not reached: the above raises
        except BaseException as exit:
            if not isinstance(exit, Exception):
                # Cut off mid-statement (a cancellation): the connection's state is unknown, so it
                # is discarded rather than handed to the next transaction, as SQLAlchemy does.
                await conn.invalidate(exit)
            raise
        return _Fetched(form.read(cursor._rows), cursor.rowcount)

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        shape = (dialect.name, dialect.driver, *keys)
        form = self._forms.get(shape)
        if form is None:
            if self.dialect not in (None, dialect.name):
                raise ValueError(f"a statement written for {self.dialect}, not {dialect.name}")
            form = self._forms[shape] = _Form.compile(self.statement, dialect, keys)
        return form


def _raise_as_sqlalchemy(conn: Connection, error: Exception, sql: str, values: list[list[Any]]) -> None:
    conn._handle_dbapi_exception(error, sql, values if len(values) > 1 else values[0], None, None)


@dataclass(frozen=True, slots=True)
class _Bind:
    key: str
    name: str  # as compiled: an expanding one's placeholder is `__[POSTCOMPILE_<name>]`
    given: bool  # taken from each row of parameters; otherwise the statement's own value
    value: Any
    expanding: bool
    process: Processor


@dataclass(slots=True)
class _Form:
    """One compiled shape of a statement: its SQL and what each `?` takes."""

    sql: str
    binds: tuple[_Bind, ...]
    columns: tuple[Any, ...] | None  # the row type and each column's processor, or None: no rows
    # By the lengths of the lists: the SQL, and the order of the values for it when it is not the
    # order `bind` lays them out in (numbered parameters, on PostgreSQL).
    expanded: dict[tuple[int, ...], tuple[str, tuple[int, ...] | None]]
    compiled: SQLCompiler

    @classmethod
    def compile(cls, statement: Statement, dialect: Dialect, keys: Sequence[str]) -> _Form:
        if dialect.paramstyle not in PARAMSTYLES:
            raise ValueError(f"prepared statements take {PARAMSTYLES} parameters, not {dialect.paramstyle}")
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)
        # What SQLAlchemy's execution context would add, which this path has not: Python-side
        # column defaults computed per row, and rows returned by an INSERT, UPDATE or DELETE.
        if compiled.insert_prefetch or compiled.update_prefetch or compiled.effective_returning:
            raise ValueError("a prepared statement takes no Python-side column default and no RETURNING")
        binds = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            given = bind.key in keys
            if not given and bind.required:
                # As SQLAlchemy refuses it, rather than binding NULL.
                raise InvalidRequestError(f"A value is required for bind parameter {bind.key!r}")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            value = None if given else bind.effective_value
            binds.append(_Bind(bind.key, name, given, value, bind.expanding, process))
        columns = None
        if isinstance(statement, Select | TextualSelect):
            selected = list(statement.selected_columns)
            # Two columns of one key (or a key that is no identifier) are refused, not renamed.
            row = namedtuple("Row", [c.key for c in selected])  # type: ignore[misc]
            processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected]
            columns = (row, processors)
        return cls(compiled.string, tuple(binds), columns, {}, compiled)

    def bind(self, rows: list[Mapping[str, Any]]) -> tuple[str, list[list[Any]]]:
        """The SQL for these rows and each row's values in the order of its `?`s."""
        values = []
        for row in rows:
            flat: list[Any] = []
            for bind in self.binds:
                value = row[bind.key] if bind.given else bind.value
                if bind.expanding:
                    flat.extend(value if bind.process is None else map(bind.process, value))
                else:
                    flat.append(value if bind.process is None else bind.process(value))
            values.append(flat)
        first = rows[0]
        lengths = tuple(len(first[b.key] if b.given else b.value) for b in self.binds if b.expanding)
        if not lengths:
            return self.sql, values
        sql, reorder = self._expand(lengths)
        if reorder is not None:
            values = [[flat[i] for i in reorder] for flat in values]
        return sql, values

    def _expand(self, lengths: tuple[int, ...]) -> tuple[str, tuple[int, ...] | None]:
        # An expanding IN list is rendered once per length: `IN (?, ?, ?)` for three values. The
        # lengths are an order's SKUs or a few statuses, bounded by the domain (MAX_LINES).
        found = self.expanded.get(lengths)
        if found is None:
            if 0 in lengths:
                raise ValueError("an expanding parameter of a prepared statement takes at least one value")
            expanding = [b for b in self.binds if b.expanding]
            reorder = None
            if self.compiled.dialect.paramstyle == "qmark":
                sql = self.sql
                for bind, length in zip(expanding, lengths, strict=True):
                    sql = sql.replace(f"__[POSTCOMPILE_{bind.name}]", ", ".join("?" * length), 1)
            else:
                # Numbered parameters ($1, $2) are numbered again after a list, as SQLAlchemy does it.
                sizes = dict(zip((b.name for b in expanding), lengths, strict=True))
                state = self.compiled.construct_expanded_state(
                    {b.key: [None] * sizes[b.name] if b.expanding else None for b in self.binds if b.given}
                )
                order = [
                    name
                    for b in self.binds
                    for name in (
                        [f"{b.name}_{i}" for i in range(1, sizes[b.name] + 1)] if b.expanding else [b.name]
                    )
                ]
                # SQLAlchemy numbers the values anew, not always in the order `bind` lays them out
                # (a list's values may come after a later parameter): where each one comes from.
                unknown = set(state.positiontup or ()) - set(order)
                if unknown:
                    raise ValueError(f"expanded parameters {sorted(unknown)} that the statement has not")
                layout = [order.index(name) for name in state.positiontup or ()]
                sql, reorder = state.statement, (None if layout == list(range(len(order))) else tuple(layout))
            self.expanded[lengths] = found = (sql, reorder)
        return found

    def read(self, fetched: list[tuple[Any, ...]]) -> list[Any]:
        if self.columns is None or not fetched:
            return []
        row, processors = self.columns
        if not any(processors):
            return [row._make(values) for values in fetched]
        return [
            row._make([v if p is None else p(v) for p, v in zip(processors, values, strict=True)])
            for values in fetched
        ]


@dataclass(frozen=True, slots=True)
class _Fetched:
    rows: list[Any]
    rowcount: int

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)
