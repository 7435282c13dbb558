"""Builds SQLAlchemy engines for the two supported stores: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidatePoolError

# A pooled PostgreSQL connection that sat unused this long is checked (a round trip) before it
# is handed out; one reused sooner is not (see _ping_when_idle).
PING_AFTER_IDLE_S = 2.0
_CHECKED_IN = "carenet_checked_in"  # key in the DBAPI connection's info: when it was returned


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql" and u.get_driver_name() in ("", "psycopg2", "default"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


# Statements that change nothing: a transaction that sent only these may be committed with an
# audit event of a refusal instead of being rolled back (``UnitOfWork.changed``). Only prefixes
# of statements this code base sends and that never write belong here (SELECT ... FOR UPDATE
# and pg_advisory_xact_lock lock, and commit releases them as rollback would); anything else,
# including what starts with WITH, counts as a write, which at worst costs a second transaction.
_READ_ONLY = ("SELECT", "BEGIN", "SAVEPOINT", "RELEASE")
WROTE = "carenet_wrote"  # key in the DBAPI connection's info: a write was sent


def _track(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    if not statement.startswith(_READ_ONLY):
        conn.info[WROTE] = True


def track_writes(engine: Engine) -> Engine:
    """Note on each connection whether a write was sent (idempotent; every Store does it)."""
    if not event.contains(engine, "before_cursor_execute", _track):
        event.listen(engine, "before_cursor_execute", _track)
    return engine


def build_engine(url: str, **kwargs: Any) -> Engine:
    return track_writes(_build(url, **kwargs))


def _build(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    # A database error's text would otherwise carry the statement's parameters (a search value,
    # a resident ID, a phone number) into the log: STYLE.md forbids them there.
    kwargs.setdefault("hide_parameters", True)
    ping_after = kwargs.pop("ping_after_idle_s", PING_AFTER_IDLE_S)
    if backend == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
        # psycopg prepares a statement on its 5th run, and PostgreSQL may then plan it once
        # for any values (a generic plan). That is what a read by id, the token lookup or the
        # audit append want: re-planning them on every run cost PostgreSQL a third of its CPU
        # per refused booking at release time. Searches must not get one (``value_plans``).
        engine = create_engine(url, **kwargs)
        if not kwargs.get("pool_pre_ping"):
            _ping_when_idle(engine, ping_after)
        return engine
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite or postgresql")


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat in the pool for
    ``idle_s`` or longer: SQLAlchemy's pool_pre_ping sends a round trip on every checkout, which
    at release time is one statement in seven of a refused booking, for connections that were
    in use a millisecond before. A connection found dead is replaced, with every other
    connection the pool held before it (as pool_pre_ping does: a dead one usually means a
    restart). A request that reuses a connection within ``idle_s`` of the cut meets the dead
    connection itself; the FHIR request runner then runs it again (api/app.py ``_run``)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_CHECKED_IN)  # None: connected just now, nothing to check
        if returned is None or time.monotonic() - returned < idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: drop it (and older ones), connect anew
            raise InvalidatePoolError("a pooled connection was dead") from exc


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take a write lock up front;
    # we issue BEGIN IMMEDIATE ourselves so that concurrent writers queue on busy_timeout
    # instead of failing with "database is locked" when a reader upgrades to a writer.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def value_plans(conn: Connection) -> Iterator[None]:
    """Statements sent inside are planned with their actual values every time: psycopg does
    not prepare them, so PostgreSQL never reuses a generic plan for them. For searches over the
    skewed index tables (a code held by half the rows, or by one), where a plan chosen without
    the values, or while the tables were small, can be thousands of times slower."""
    if conn.dialect.name != "postgresql":
        yield
        return
    raw: Any = conn.connection.driver_connection
    before = raw.prepare_threshold
    raw.prepare_threshold = None
    try:
        yield
    finally:
        raw.prepare_threshold = before


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
