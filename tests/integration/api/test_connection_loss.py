"""A request whose pooled connection the database has cut (a restart, an idle timeout) is run
again on a new connection instead of failing (PostgreSQL: SQLite has no server to lose)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.api.conftest import BASE, system_token

from carenet.bootstrap import build_store
from carenet.config import Settings
from carenet.store import engine as engine_mod
from carenet.store.engine import build_engine
from carenet.store.migrate import upgrade


@pytest.fixture
def pg_client(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    # No idle check at checkout: every pooled connection is handed out as it is, so the cut
    # below reaches the request itself (the case the idle check leaves: a reuse within 2 s).
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 3600.0)
    url, name = create_pg_database(pg_server)
    settings = Settings(database_url=url, base_url=BASE, node_id="test", env="test")
    upgrade(url)
    store = build_store(settings)
    from carenet.api.app import create_app

    try:
        with TestClient(create_app(settings, store), base_url=BASE) as c:
            c.headers["Content-Type"] = "application/fhir+json"
            c.headers["Authorization"] = f"Bearer {system_token(store, c)}"
            yield c, url
    finally:
        store.engine.dispose()
        drop_pg_database(pg_server, name)


def _cut_every_connection(pg_server: str, url: str) -> int:
    admin = build_engine(pg_server)
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": make_url(url).database},
                ).all()
            )
    finally:
        admin.dispose()


def test_a_request_on_a_cut_connection_is_run_again(pg_client, pg_server) -> None:
    client, url = pg_client
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201, created.text
    assert _cut_every_connection(pg_server, url) >= 1
    r = client.get(f"/fhir/Patient/{created.json()['id']}")
    assert r.status_code == 200, r.text
    # A write on a cut connection: run again, and written exactly once.
    assert _cut_every_connection(pg_server, url) >= 1
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    assert r.status_code == 201, r.text
    r = client.get("/fhir/Patient", params={"gender": "male", "_total": "accurate"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
