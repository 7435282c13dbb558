"""Fixtures for API tests: a migrated database of each kind and an HTTP client on the app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from carenet.bootstrap import build_store
from carenet.config import Settings
from carenet.store.migrate import upgrade

BASE = "http://testserver"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, base_url=BASE, node_id="test", env="test")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from carenet.api.app import create_app

    upgrade(settings.database_url)
    store = build_store(settings)
    app = create_app(settings, store)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        c.headers["Content-Type"] = "application/fhir+json"
        # A backend service with every scope: these tests are about FHIR behaviour; access
        # control has its own tests (tests/integration/access_control).
        c.headers["Authorization"] = f"Bearer {system_token(store, c)}"
        yield c
    store.engine.dispose()


def client_credentials_token(store, client: TestClient, scope: str) -> tuple[str, str]:  # noqa: ANN001
    """Register a confidential client with ``scope``; returns (client_id, access token)."""
    import uuid

    from carenet.access.clients import create_client

    with store.engine.begin() as conn:
        client_id, secret = create_client(conn, name=f"test-{uuid.uuid4().hex[:8]}", scopes=scope)
    r = client.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret or ""),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    return client_id, str(r.json()["access_token"])


def system_token(store, client: TestClient, scope: str = "system/*.cruds") -> str:  # noqa: ANN001
    """A token by client credentials for a new client with ``scope``."""
    return client_credentials_token(store, client, scope)[1]


@pytest.fixture
def store_counts(settings: Settings):  # noqa: ANN201 - returns a callable
    """A function giving the row count of every table, to assert that nothing else changed."""
    from sqlalchemy import func, select

    from carenet.store.schema import metadata

    def counts() -> dict[str, int]:
        store = build_store(settings)
        try:
            with store.engine.connect() as conn:
                return {
                    name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for name, t in metadata.tables.items()
                    # Paging snapshots are a cache; the audit chain records refusals too
                    # (asserted by the audit tests), so "nothing changed" means the data.
                    if not name.startswith(("search_snapshot", "audit_"))
                }
        finally:
            store.engine.dispose()

    return counts


@pytest.fixture
def audit_log(settings: Settings):  # noqa: ANN201 - returns a callable
    """A function giving the audit events recorded so far, oldest first, as dicts."""
    from sqlalchemy import select

    from carenet.audit import audit_events

    def events() -> list[dict]:
        store = build_store(settings)
        try:
            with store.engine.connect() as conn:
                rows = conn.execute(
                    select(audit_events).order_by(
                        audit_events.c.recorded, audit_events.c.chain_id, audit_events.c.seq
                    )
                ).mappings()
                return [dict(r) for r in rows]
        finally:
            store.engine.dispose()

    return events


@pytest.fixture
def live_token(live_server: str, db_url: str) -> str:
    """A system-scoped bearer token for the live server (client registered in its database)."""
    import uuid

    import httpx

    from carenet.access.clients import create_client
    from carenet.store.engine import build_engine

    engine = build_engine(db_url)
    try:
        with engine.begin() as conn:
            client_id, secret = create_client(
                conn, name=f"live-{uuid.uuid4().hex[:8]}", scopes="system/*.cruds"
            )
    finally:
        engine.dispose()
    base = live_server.removesuffix("/fhir")
    r = httpx.post(
        f"{base}/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.cruds"},
        auth=(client_id, secret or ""),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
