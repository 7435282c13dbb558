"""`carenet client create --json` registers a backend client whose credentials get a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.unit.access.fakes import FakeFieldProtector

from carenet.access.accounts import AuthContext
from carenet.access.oauth_schema import oauth_clients
from carenet.api.auth_router import create_auth_router
from carenet.bootstrap import build_store
from carenet.config import Settings
from carenet.store.migrate import upgrade
from carenet.store.schema import metadata


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARENET_DATABASE_URL": db_url, "CARENET_BASE_URL": "http://testserver"}
    return subprocess.run(
        [sys.executable, "-m", "carenet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_client_create_json_prints_credentials_that_get_a_token(db_url: str):
    # Until the OAuth tables have their Alembic migration, create what migrations do not.
    upgrade(db_url)
    settings = Settings(database_url=db_url, base_url="http://testserver", env="test")
    store = build_store(settings)
    metadata.create_all(store.engine)

    done = _cli(
        db_url, "client", "create", "--name", "Courier", "--scope", "system/*.cruds", "--json"
    )
    assert done.returncode == 0, done.stderr
    creds = json.loads(done.stdout)
    assert set(creds) == {"client_id", "client_secret", "scope", "token_endpoint"}
    assert creds["scope"] == "system/*.cruds"
    assert creds["token_endpoint"] == "http://testserver/auth/token"

    app = FastAPI()
    app.include_router(create_auth_router(settings, store, AuthContext(FakeFieldProtector())))
    with TestClient(app, base_url="http://testserver") as client:
        r = client.post(
            "/auth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "system/*.cruds"

    refused = _cli(db_url, "client", "create", "--name", "Bad", "--scope", "patient/*.rs")
    assert refused.returncode == 2
    assert "client refused (400)" in refused.stderr
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(oauth_clients)).scalar_one() == 1
    store.engine.dispose()
