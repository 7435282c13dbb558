"""Shared fixtures: throwaway databases on SQLite and PostgreSQL, and the shared test data.

Every integration test that takes ``db_url`` runs once per store. PostgreSQL databases are
created for the test session and dropped afterwards; tests never touch a database they did not
create. Set CARENET_TEST_PG_URL to point at another server (default: local trust auth). When
CI=true a missing PostgreSQL is an error, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
PG_ADMIN_URL = os.environ.get(
    "CARENET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data; skips the test (saying why) when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (it sits beside the project in CI)")
    return path


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable PostgreSQL, or skip (fail under CI=true)."""
    problem = _pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {problem}")
    return PG_ADMIN_URL


def create_pg_database(admin_url: str) -> tuple[str, str]:
    """Create a fresh database; returns (url, name)."""
    name = f"carenet_test_{uuid.uuid4().hex[:12]}"
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    eng = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a new, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'carenet-test.db'}"
        return
    admin = request.getfixturevalue("pg_server")
    url, name = create_pg_database(admin)
    try:
        yield url
    finally:
        drop_pg_database(admin, name)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(db_url: str, tmp_path) -> Iterator[str]:  # noqa: ANN001
    """A real `carenet serve` process on a free port; yields its FHIR base URL."""
    import subprocess
    import sys
    import time

    import httpx

    from carenet.store.migrate import upgrade

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
