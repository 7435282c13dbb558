"""Fixtures for OAuth2/SMART tests: a database of each kind with every table, an app made of
the auth router alone, a hand-moved clock, and factories of clients and accounts."""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.unit.access.fakes import FAST_POLICY, FakeClock

from carenet.access.accounts import Account, AuthContext, register_patient
from carenet.access.clients import create_client
from carenet.access.oauth_tokens import Principal
from carenet.access.protector import CryptoFieldProtector
from carenet.access.realname import verify_real_name
from carenet.adapters.notify import OutboxNotifier
from carenet.api.auth import bearer_authenticator
from carenet.api.auth_router import create_auth_router
from carenet.config import Settings
from carenet.fhir import identifiers as ids
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.engine import build_engine
from carenet.store.protection import ResourceProtection
from carenet.store.schema import metadata
from carenet.store.uow import Store

BASE = "http://testserver"
FHIR_BASE = f"{BASE}/fhir"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "s3cret-passw0rd"


@dataclass
class AuthEnv:
    client: TestClient
    store: Store
    ctx: AuthContext
    clock: FakeClock
    settings: Settings

    def run(self, fn: Any) -> Any:
        with self.store.unit_of_work() as uow:
            result = fn(uow.repo.conn, uow.repo)
            uow.commit()
            return result

    def counts(self, *names: str) -> dict[str, int]:
        tables = [metadata.tables[n] for n in names] if names else list(metadata.tables.values())
        with self.store.engine.connect() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in tables
                if not t.name.startswith("search_snapshot")
            }

    # --- factories ---------------------------------------------------------------------------

    def system_client(self, scope: str = "system/*.rs") -> tuple[str, str]:
        client_id, secret = self.run(lambda c, r: create_client(c, name="Courier", scopes=scope))
        assert secret is not None
        return client_id, secret

    def app_client(
        self,
        scope: str = "launch/patient patient/*.rs offline_access",
        kind: str = "public",
    ) -> tuple[str, str | None]:
        return self.run(  # type: ignore[no-any-return]
            lambda c, r: create_client(
                c, name="健康助手 Health app", scopes=scope, kind=kind, redirect_uris=[REDIRECT]
            )
        )

    def patient(self) -> tuple[Account, str, str]:
        """A real-name verified patient account with a password; (account, login, patient)."""
        login = f"pat.{uuid.uuid4().hex[:10]}"
        phone = "13" + "".join(random.choice("0123456789") for _ in range(9))
        rid = ids.make_resident_id("330122", date(1980, 5, 17), random.randrange(0, 499) * 2)

        def make(conn: Any, repo: Any) -> tuple[Account, str]:
            account = register_patient(
                conn, self.ctx, phone=phone, login_name=login, password=PASSWORD
            )
            result = verify_real_name(conn, repo, self.ctx, account.id, "林小红", rid)
            return result.account, result.patient_ref

        account, patient_ref = self.run(make)
        return account, login, patient_ref


@pytest.fixture
def auth_env(db_url: str) -> Iterator[AuthEnv]:
    engine = build_engine(db_url)
    metadata.create_all(engine)
    clock = FakeClock()
    protector = CryptoFieldProtector.from_secret("test-master-secret-for-oauth-tests-0123456789")
    ctx = AuthContext(
        protector=protector,
        policy=FAST_POLICY,
        clock=clock,
        notifier=OutboxNotifier(protector, clock=clock),
    )
    settings = Settings(database_url=db_url, base_url=BASE, node_id="test", env="test")
    store = Store(
        engine,
        source="urn:carenet:node:test",
        tz="Asia/Shanghai",
        protection=ResourceProtection(protector),
    )
    app = FastAPI()
    app.include_router(create_auth_router(settings, store, ctx))
    authenticate = bearer_authenticator(store, ctx)

    @app.exception_handler(OperationOutcomeError)
    async def _ooe(_: Request, exc: OperationOutcomeError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse(exc.to_outcome(), exc.status, headers=exc.headers or None)

    @app.get("/whoami")
    def whoami(principal: Principal | None = Depends(authenticate)) -> dict[str, Any]:
        if principal is None:
            return {"anonymous": True}
        return {
            "account": principal.account_id,
            "client": principal.client_id,
            "scope": principal.scope,
            "patient": principal.launch_patient,
            "contexts": sorted(principal.contexts),
        }

    with TestClient(app, base_url=BASE, raise_server_exceptions=True) as client:
        yield AuthEnv(client, store, ctx, clock, settings)
    engine.dispose()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def codes_of(response: Any) -> list[str]:
    body = response.json()
    if "issue" in body:
        return [i["details"]["coding"][0]["code"] for i in body["issue"]]
    return [body["code"]]


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
