"""Prebuilt statements on the driver's cursor (store/direct.py): the same rows as SQLAlchemy
gives, on each database; on PostgreSQL the statement listeners, the write tracking, the
errors and a cut connection behave as on SQLAlchemy's own path."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from carenet.store.direct import Prebuilt
from carenet.store.engine import WROTE, build_engine

_md = MetaData()
_people = Table(
    "direct_people",
    _md,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False),
    Column("status", String(8), nullable=False),
)
_BY_STATUS = Prebuilt(
    select(_people.c.id, _people.c.name.label("who"))
    .where(_people.c.status == "active", _people.c.id >= bindparam("low"))
    .order_by(_people.c.id)
)
_RENAME = Prebuilt(
    update(_people).where(_people.c.id == bindparam("i")).values(name=bindparam("n"))
)
_ADD = Prebuilt(insert(_people).values(id=bindparam("id"), name=bindparam("n"), status="active"))


def _seeded(url, **kwargs):
    engine = build_engine(url, **kwargs)
    _md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(_people),
            [
                {"id": 1, "name": "王芳", "status": "active"},
                {"id": 2, "name": "李娜", "status": "closed"},
                {"id": 3, "name": "张伟", "status": "active"},
            ],
        )
    return engine


@pytest.fixture
def engine(db_url):
    engine = _seeded(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pg_engine(pg_url):
    """The same table on PostgreSQL only: the direct path is PostgreSQL's."""
    engine = _seeded(pg_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_rows_are_those_sqlalchemy_gives_with_the_same_names(engine):
    with engine.connect() as conn:
        direct = _BY_STATUS.run(conn, {"low": 1}).all()
        through = conn.execute(_BY_STATUS.stmt, {"low": 1}).all()
        assert [(r.id, r.who) for r in direct] == [(1, "王芳"), (3, "张伟")]
        assert [tuple(r) for r in direct] == [tuple(r) for r in through]
        assert _BY_STATUS.run(conn, {"low": 2}).first().who == "张伟"
        assert _BY_STATUS.run(conn, {"low": 4}).first() is None
        assert _BY_STATUS.run(conn, {"low": 3}).scalar() == 3
        assert _RENAME.run(conn, {"i": 3, "n": "张伟伟"}).rowcount == 1
        assert _RENAME.run(conn, {"i": 99, "n": "无"}).rowcount == 0
        conn.commit()
    with engine.connect() as conn:
        assert conn.execute(select(_people.c.name).where(_people.c.id == 3)).scalar() == "张伟伟"


def test_statements_on_postgresql_skip_sqlalchemy_and_reuse_one_cursor(pg_engine):
    with pg_engine.connect() as conn:
        contexts: list[object] = []
        cursors: list[object] = []

        def seen(_c, cursor, _s, _p, context, _m):
            contexts.append(context)
            cursors.append(cursor)

        event.listen(conn, "before_cursor_execute", seen)
        _BY_STATUS.run(conn, {"low": 1})
        _BY_STATUS.run(conn, {"low": 2})
        # No SQLAlchemy execution context: the statement went to the cursor directly.
        assert contexts == [None, None]
        assert cursors[0] is cursors[1]


def test_a_write_is_tracked_and_a_read_is_not(pg_engine):
    with pg_engine.connect() as conn:
        conn.info.pop(WROTE, None)
        _BY_STATUS.run(conn, {"low": 1})
        assert WROTE not in conn.info
        _RENAME.run(conn, {"i": 1, "n": "x"})
        assert conn.info[WROTE] is True
        conn.rollback()


def test_a_constraint_violation_is_sqlalchemys_error_without_the_values(pg_engine):
    with pg_engine.connect() as conn:
        _ADD.run(conn, {"id": 7, "n": "13800138000"})
        with pytest.raises(IntegrityError) as err:
            _ADD.run(conn, {"id": 7, "n": "13800138000"})
        assert err.value.connection_invalidated is False
        assert "13800138000" not in str(err.value)
        conn.rollback()
        # The transaction is usable again, on a new cursor (SQLAlchemy closed the old one).
        assert _ADD.run(conn, {"id": 7, "n": "赵敏"}).rowcount == 1
        conn.commit()
    with pg_engine.connect() as conn:
        assert conn.execute(select(_people.c.name).where(_people.c.id == 7)).scalar() == "赵敏"


def test_a_connection_cut_mid_transaction_is_invalidated_and_replaced(pg_url, pg_server):
    engine = _seeded(pg_url, pool_size=1, max_overflow=0)
    admin = build_engine(pg_server)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as a:
                a.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            with pytest.raises(DBAPIError) as err:
                _BY_STATUS.run(conn, {"low": 1})
            assert err.value.connection_invalidated is True
        with engine.connect() as conn:  # the pool hands out a new, working connection
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
            assert len(_BY_STATUS.run(conn, {"low": 1}).all()) == 2
    finally:
        engine.dispose()
        admin.dispose()


def test_a_first_statement_begins_sqlalchemys_transaction_as_its_own_path_does(engine):
    with engine.connect() as conn:
        assert not conn.in_transaction()
        _ADD.run(conn, {"id": 8, "n": "钱进"})
        assert conn.in_transaction()
        conn.commit()  # commits it: not a transaction SQLAlchemy knows nothing of
    with engine.connect() as conn:
        assert conn.execute(select(_people.c.name).where(_people.c.id == 8)).scalar() == "钱进"
        _ADD.run(conn, {"id": 9, "n": "孙丽"})
        conn.rollback()
        assert conn.execute(select(_people.c.id).where(_people.c.id == 9)).first() is None
