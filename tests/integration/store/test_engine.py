"""Engines as build_engine makes them, on each database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.conftest import create_pg_database, drop_pg_database

from carenet.store import engine as engine_mod
from carenet.store.engine import build_engine
from carenet.store.schema import metadata
from carenet.store.uow import Store


def test_a_database_error_names_the_statement_but_not_its_values(db_url):
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as err:
            conn.execute(text("SELECT * FROM no_such_table WHERE code = :c"), {"c": "13800138000"})
    finally:
        engine.dispose()
    assert "no_such_table" in str(err.value)
    assert "13800138000" not in str(err.value)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new PostgreSQL database (prepared statements and plan reuse are PostgreSQL's)."""
    url, name = create_pg_database(pg_server)
    try:
        yield url
    finally:
        drop_pg_database(pg_server, name)


def test_searches_are_planned_with_their_values_and_reads_by_id_are_prepared(pg_url):
    # PostgreSQL may reuse a generic plan only for statements psycopg has prepared (from the
    # 5th run on). A read by id should be (re-planning it every time cost a third of the
    # database's CPU at a booking storm); a search must never be: a plan chosen without its
    # values can be thousands of times slower on the skewed index tables.
    engine = build_engine(pg_url)
    metadata.create_all(engine)
    try:
        store = Store(engine, source="urn:test", tz="Asia/Shanghai", protection=None)
        with store.unit_of_work() as uow:
            pid = uow.repo.create("Patient", {"resourceType": "Patient", "gender": "female"})["id"]
            uow.commit()
        with store.unit_of_work() as uow:
            for _ in range(8):
                uow.repo.read("Patient", pid)
                uow.repo.search("Patient", [("gender", "female")])
                uow.repo.history("Patient", since=0)
            prepared = [
                s
                for (s,) in uow.repo.conn.execute(
                    text("SELECT statement FROM pg_prepared_statements")
                )
            ]
        assert any("FROM resources" in s and "res_id = $2" in s for s in prepared), prepared
        assert not any("idx_token" in s for s in prepared), prepared
        assert not any("resource_history" in s for s in prepared), prepared
    finally:
        engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_reused_at_once_is_not_pinged_and_an_idle_one_is(pg_url, monkeypatch):
    clock = [1000.0]  # the pool's idea of time, moved by hand: no sleeping, no timing luck
    monkeypatch.setattr(engine_mod, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    engine = build_engine(pg_url, pool_size=1, max_overflow=0, ping_after_idle_s=2.0)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    try:
        first = _backend_pid(engine)  # a new connection: nothing to check
        clock[0] += 1.9
        assert _backend_pid(engine) == first  # reused within 2 s: no round trip spent on it
        assert pings == []
        clock[0] += 2.0
        assert _backend_pid(engine) == first  # idle 2 s: checked, and alive
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_an_idle_connection_cut_by_the_server_is_replaced_without_an_error(pg_url, pg_server):
    engine = build_engine(pg_url, pool_size=1, max_overflow=0, ping_after_idle_s=0.1)
    admin = build_engine(pg_server)
    try:
        first = _backend_pid(engine)
        with admin.connect() as conn:  # what a database restart or an idle timeout does
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first})
        time.sleep(0.2)
        # The request that checks out the dead connection still gets a working one.
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()
        admin.dispose()
