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
        yield c
    store.engine.dispose()


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(db_url: str, tmp_path) -> Iterator[str]:  # noqa: ANN001
    """A real `carenet serve` process on a free port; yields its FHIR base URL."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    upgrade(db_url)
    port = _free_port()
    env = {
        **os.environ,
        "CARENET_DATABASE_URL": db_url,
        "CARENET_BASE_URL": f"http://127.0.0.1:{port}",
        "CARENET_NODE_ID": "live-test",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "carenet.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "server did not start: " + (tmp_path / "server.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        yield f"{base}/fhir"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
