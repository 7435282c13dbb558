"""Prebuilt hot statements run straight on psycopg's cursor on PostgreSQL, and through
SQLAlchemy elsewhere: the statements every API request sends (the token lookup, a read by id,
the audit append, the outbox row, the flush).

SQLAlchemy's execution path (execution context, parameter processing, result metadata) cost
about as much CPU again as psycopg's own per statement: 170 against 95 microseconds for a
select by key, measured on this 2-core machine; at release time (放号) a booking sends about
ten of them. A statement is run this way only if SQLAlchemy would add nothing to it on
PostgreSQL: no type converts its parameters or its result columns, no parameter expands into
a list; any other statement takes SQLAlchemy's path unchanged. Either way the engine's
``before_cursor_execute`` listeners see it (the write tracking of store/engine.py, tests'
statement recorders) and a driver error is handled by SQLAlchemy itself: wrapped in its
DBAPIError, a dead connection invalidated and reported so (the request runner's retry)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

from psycopg.pq import ExecStatus
from sqlalchemy import Boolean, Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

POSTGRESQL = "postgresql"
TUPLES_OK = ExecStatus.TUPLES_OK
_CURSOR = "carenet_cursor"  # key in the DBAPI connection's info: its reusable cursor


class Rows(Protocol):
    """What callers use of a result: SQLAlchemy's CursorResult has it, and so has DirectRows."""

    rowcount: int

    def first(self) -> Any: ...
    def one(self) -> Any: ...
    def all(self) -> Sequence[Any]: ...
    def scalar(self) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class DirectRows:
    """The rows of a statement run on the cursor, fetched at once (named tuples: attribute
    access by column name, as SQLAlchemy's Row)."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def all(self) -> list[Any]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class _Plan:
    """A statement compiled for PostgreSQL once: its SQL, the values of its literal
    parameters, and whether it may be sent without SQLAlchemy."""

    __slots__ = ("sql", "defaults", "why", "row")

    def __init__(self, stmt: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        self.sql = compiled.string
        self.why = _needs_sqlalchemy(stmt, compiled, dialect)
        self.row: Callable[[Sequence[Any]], Any] | None = None  # named rows, once seen
        self.defaults = {
            name: bp.effective_value for bp, name in compiled.bind_names.items() if not bp.required
        }

    @property
    def direct(self) -> bool:
        return self.why is None

    def learn_row(self, cursor: Any) -> Callable[[Sequence[Any]], Any]:
        """The maker of this statement's named rows, from its first result's columns."""
        names = [c.name for c in cursor.description]
        self.row = namedtuple("Row", names, rename=True)._make  # type: ignore[attr-defined]
        return self.row


def _needs_sqlalchemy(stmt: ClauseElement, compiled: SQLCompiler, dialect: Dialect) -> str | None:
    """Why the statement must go through SQLAlchemy on this dialect, or None."""
    if compiled.positional:
        return "positional parameters"
    if compiled.insert_prefetch or compiled.update_prefetch:
        return "column defaults computed at execution"
    if compiled.escaped_bind_names:
        return "escaped parameter names"
    for bp in compiled.binds.values():
        if bp.expanding or bp.literal_execute or bp.callable is not None:
            return f"parameter {bp.key!r} is expanded or computed at execution"
        # psycopg sends a Python bool as a PostgreSQL boolean. SQLAlchemy's processor would
        # also turn 0 and 1 into booleans, which PostgreSQL refuses here: callers pass bools.
        if isinstance(bp.type, Boolean):
            continue
        try:
            processor = bp.type.dialect_impl(dialect).bind_processor(dialect)
        except Exception:  # noqa: BLE001 - a type that cannot say: SQLAlchemy's path
            return f"parameter {bp.key!r} has a type whose conversion is unknown"
        if processor is not None:
            return f"parameter {bp.key!r} is converted by its type"
    for col in getattr(stmt, "exported_columns", ()):
        try:
            # Some types need the column's database type to answer (numeric: psycopg's
            # NUMERIC raised on None): any answer but "nothing to do" keeps SQLAlchemy's path.
            processor = col.type.dialect_impl(dialect).result_processor(dialect, None)
        except Exception:  # noqa: BLE001
            return f"column {col.key!r} has a type whose conversion is unknown"
        if processor is not None:
            return f"column {col.key!r} is converted by its type"
    return None


class Prebuilt:
    """A statement built once and run many times: ``Prebuilt(select(...)).run(conn, {...})``.

    On PostgreSQL it is compiled once and, if SQLAlchemy adds nothing to it there (see the
    module docstring), sent on the connection's psycopg cursor in its transaction (run_sql);
    otherwise, and on SQLite, ``conn.execute`` runs it."""

    __slots__ = ("stmt", "_plan")

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._plan: _Plan | None = None

    def plan(self, dialect: Dialect) -> _Plan:
        plan = self._plan
        if plan is None:
            plan = self._plan = _Plan(self.stmt, dialect)
        return plan

    def run(self, conn: Connection, params: Mapping[str, Any]) -> Rows:
        plan = self.plan(conn.dialect) if conn.dialect.name == POSTGRESQL else None
        if plan is None or not plan.direct:
            return conn.execute(self.stmt, params)  # type: ignore[call-overload]
        values = {**plan.defaults, **params} if plan.defaults else params
        return run_sql(conn, plan.sql, values, plan=plan)


def run_sql(
    conn: Connection,
    sql: str,
    params: Mapping[str, Any] | Sequence[Any],
    *,
    plan: _Plan | None = None,
) -> DirectRows:
    """Send ``sql`` (psycopg's placeholders) on ``conn``'s PostgreSQL connection, in its
    transaction; prepared, as on SQLAlchemy's path, once psycopg's threshold is reached (and
    never inside store.engine.value_plans). Rows are tuples, or named as the columns of
    ``plan``'s statement."""
    if not conn.in_transaction():
        # SQLAlchemy's own path begins a transaction here ("autobegin"); without it psycopg
        # would open one that SQLAlchemy neither commits nor knows to roll back.
        conn.begin()
    fairy = conn.connection
    raw: Any = fairy.driver_connection
    cursor: Any = None
    try:
        # One cursor per connection, kept while it is open: a new cursor per statement (its
        # own adapters map, its row maker) was a tenth of psycopg's part of a statement.
        cursor = fairy.info.get(_CURSOR)
        if cursor is None or cursor.closed or cursor.connection is not raw:
            cursor = fairy.info[_CURSOR] = raw.cursor()
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, cursor, sql, params, None, False)
        cursor.execute(sql, params)
        result = cursor.pgresult
        rows = cursor.fetchall() if result is not None and result.status == TUPLES_OK else []
        rowcount = cursor.rowcount
        if rows and plan is not None:
            make = plan.row or plan.learn_row(cursor)
            rows = [make(r) for r in rows]
    except BaseException as exc:  # SQLAlchemy wraps, invalidates and re-raises it
        conn._handle_dbapi_exception(exc, sql, params, cursor, None)  # noqa: SLF001
    return DirectRows(rows, rowcount)
