"""The hot statements of a saga's steps, sent straight to the SQLite driver.

Every saga runs the same dozen statements (its participants' reads and writes, and the journal and
read-model rows each commit sends), and on SQLite running them through SQLAlchemy cost about three
times what sqlite3 spends on them: an execution context per call, each parameter of each row
processed through several layers, a result object wrapped around the cursor. A `Prepared` statement
is still written in SQLAlchemy Core, so its SQL, its types' conversions (UTC datetimes, JSON) and the
tables it names are the ones everything else uses; what it skips is the per-call machinery. It is
compiled once per set of parameter names (and per length of each expanding IN list), its parameters
are converted by the same processors SQLAlchemy would apply, and sqlite3 runs it (sqlite3 keeps the
prepared statement in its own per-connection cache). Errors come back as SQLAlchemy's exceptions, so
callers catch the same `IntegrityError` or `DBAPIError` on either path.

Only SQLite's blocking writer takes this path (`persistence/connection.py`'s `BlockingDb`), and only with
the fast paths on (`Settings.fast_paths`): it leans on SQLAlchemy's compiler internals (`positiontup`,
`binds`, the `__[POSTCOMPILE_name]` placeholder; docs/library-internals.md). Otherwise, and always on
PostgreSQL, the statement runs through SQLAlchemy, whose asyncpg dialect already prepares statements
once per connection.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Processor = Callable[[Any], Any] | None
Statement = UpdateBase | Select[Any]  # an INSERT, UPDATE or DELETE, or a SELECT


class Rows(Protocol):
    """What running a statement gives its caller, on either path: its rows and how many it changed."""

    @property
    def rowcount(self) -> int: ...
    def first(self) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Prepared:
    """A statement (a module-level constant) to run on the driver directly; see the module's note.

    Its bind parameters are given by key as usual; a parameter made with `bindparam(expanding=True)`
    takes a non-empty sequence. Rows read come back as named tuples whose fields are the statement's
    column keys, their values converted as SQLAlchemy converts them."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._forms: dict[tuple[str, ...], _Form] = {}  # by dialect name and parameter names

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

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form:
        shape = (dialect.name, *keys)
        form = self._forms.get(shape)
        if form is None:
            form = self._forms[shape] = _Form.compile(self.statement, dialect, keys)
        return form


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
    expanded: dict[tuple[int, ...], str]

    @classmethod
    def compile(cls, statement: Statement, dialect: Dialect, keys: Sequence[str]) -> _Form:
        if dialect.paramstyle != "qmark":
            raise ValueError(f"prepared statements run on sqlite3 (qmark parameters), not {dialect.name}")
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
        if isinstance(statement, Select):
            selected = list(statement.selected_columns)
            # Two columns of one key (or a key that is no identifier) are refused, not renamed.
            row = namedtuple("Row", [c.key for c in selected])  # type: ignore[misc]
            processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in selected]
            columns = (row, processors)
        return cls(compiled.string, tuple(binds), columns, {})

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
        return (self._expand(lengths) if lengths else self.sql), values

    def _expand(self, lengths: tuple[int, ...]) -> str:
        # An expanding IN list is rendered once per length: `IN (?, ?, ?)` for three values. The
        # lengths are an order's SKUs or a few statuses, bounded by the domain (MAX_LINES).
        sql = self.expanded.get(lengths)
        if sql is None:
            if 0 in lengths:
                raise ValueError("an expanding parameter of a prepared statement takes at least one value")
            sql = self.sql
            for bind, length in zip((b for b in self.binds if b.expanding), lengths, strict=True):
                sql = sql.replace(f"__[POSTCOMPILE_{bind.name}]", ", ".join("?" * length), 1)
            self.expanded[lengths] = sql
        return sql

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
