"""Engines as build_engine makes them, on each database."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

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


def test_a_patients_appointments_are_found_per_candidate_even_with_a_generic_plan(pg_url):
    # psycopg prepares a statement on its 5th run and PostgreSQL may then keep a generic plan.
    # Repository.referencing must stay driven by the reference (one patient's few rows) even
    # then, and check each candidate's date on its own rows, not scan every date since the bound
    # (as EXISTS did: a merge semi-join over all appointments' date rows).
    from carenet.store.repository import _REFERENCING, Repository

    engine = build_engine(pg_url)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            repo = Repository(conn, source="test", validate=False)
            for i in range(3000):
                day = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}"
                repo.create(
                    "Appointment",
                    {
                        "resourceType": "Appointment",
                        "status": "booked",
                        "start": f"{day}T09:00:00+08:00",
                        "end": f"{day}T09:15:00+08:00",
                        "participant": [
                            {"actor": {"reference": f"Patient/p{i % 300}"}, "status": "accepted"}
                        ],
                    },
                )
            repo.flush()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        sql = _REFERENCING.plan(engine.dialect).sql
        for i, key in enumerate(("t", "p", "tt", "ti", "dp", "since"), 1):
            sql = sql.replace(f"%({key})s", f"${i}")
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SET plan_cache_mode = force_generic_plan")
            cur.execute(f"PREPARE r(text, text, text, text, text, bigint) AS {sql}")
            cur.execute("EXPLAIN EXECUTE r('Appointment', 'patient', 'Patient', 'p7', 'date', 0)")
            plan = "\n".join(row[0] for row in cur.fetchall())
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert "SubPlan" in plan and "ix_idx_date_resource" in plan, plan
    assert "ix_idx_date_low_high" not in plan, plan
