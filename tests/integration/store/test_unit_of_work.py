"""``UnitOfWork.changed``: whether a transaction has written anything, which decides whether a
refusal's audit event may be committed in the request's own transaction."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, select, text

from carenet.store.engine import normalise_url
from carenet.store.schema import metadata, resources
from carenet.store.uow import Store, UnitOfWork


def _store(engine: Engine) -> Store:
    return Store(engine, source="urn:test", tz="Asia/Shanghai", protection=None)


def _patient(store: Store) -> str:
    with store.unit_of_work() as uow:
        stored = uow.repo.create("Patient", {"resourceType": "Patient"})
        uow.commit()
    return str(stored["id"])


def _activate(uow: UnitOfWork, pid: str) -> None:
    """A write sent to the database: the Patient's next version."""
    current = uow.repo.read_for_update("Patient", pid)
    uow.repo.update("Patient", pid, {**current, "active": True})


def test_reads_and_locks_change_nothing(engine):
    store = _store(engine)
    pid = _patient(store)
    with store.unit_of_work() as uow:
        uow.repo.read("Patient", pid)
        uow.repo.read_for_update("Patient", pid)
        uow.repo.search("Patient", [("_id", pid)])
        assert not uow.changed()


def test_a_sent_write_is_a_change(engine):
    store = _store(engine)
    pid = _patient(store)
    with store.unit_of_work() as uow:
        _activate(uow, pid)
        assert uow.changed()


def test_a_buffered_insert_is_a_change_before_it_is_sent(engine):
    store = _store(engine)
    with store.unit_of_work() as uow:
        uow.repo.create("Patient", {"resourceType": "Patient"})
        assert uow.repo.has_buffered()
        assert uow.changed()


def test_any_statement_other_than_a_read_is_a_change(engine):
    store = _store(engine)
    with store.unit_of_work() as uow:
        uow.repo.conn.execute(select(resources.c.res_id).limit(1))
        assert not uow.changed()
        uow.repo.conn.execute(text("DELETE FROM resources WHERE res_id = 'nothing'"))
        assert uow.changed()


def test_each_unit_of_work_starts_unchanged_on_a_reused_connection(engine):
    store = _store(engine)
    with store.unit_of_work() as uow:
        uow.repo.create("Patient", {"resourceType": "Patient"})
        uow.commit()
    with store.unit_of_work() as uow:  # the pool hands the same connection back
        assert not uow.changed()


def test_a_store_on_an_engine_built_elsewhere_still_tracks_writes(db_url):
    # Whoever builds the engine, the Store registers the tracking: otherwise every transaction
    # would look unchanged and a refusal could commit what it wrote.
    engine = create_engine(normalise_url(db_url))
    metadata.create_all(engine)
    try:
        store = _store(engine)
        pid = _patient(store)
        with store.unit_of_work() as uow:
            _activate(uow, pid)
            assert uow.changed()
    finally:
        engine.dispose()
