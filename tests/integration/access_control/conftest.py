"""A small world for access-control tests: two hospitals, a doctor at each, a nurse, a
pharmacist, admins, a regulator, two patients, and a bearer token for every role."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from carenet.access.accounts import register_staff
from carenet.access.clients import create_client
from carenet.access.oauth_tokens import OAuthPolicy, store_token
from carenet.access.practitioners import (
    ROLE_LICENCES,
    register_practitioner_role,
    verify_practitioner_role,
)
from carenet.api.app import create_app
from carenet.bootstrap import build_auth_context, build_store
from carenet.config import Settings
from carenet.store.migrate import upgrade

BASE = "http://testserver"


@dataclass
class World:
    client: TestClient
    store: Any
    tokens: dict[str, str] = field(default_factory=dict)  # role (or name) -> bearer token
    ids: dict[str, str] = field(default_factory=dict)  # name -> resource id
    ctx: Any = None  # the identity services' context

    def as_(self, who: str | None, **headers: str) -> dict[str, str]:
        h = {"Content-Type": "application/fhir+json", **headers}
        if who is not None:
            h["Authorization"] = f"Bearer {self.tokens[who]}"
        return h


def _mint(
    conn: Any, client_id: str, account_id: str | None, scope: str, launch_patient: str | None = None
) -> str:
    token = secrets.token_urlsafe(32)
    body = {"access_token": token, "token_type": "Bearer", "scope": scope}
    store_token(
        conn,
        OAuthPolicy(),
        int(time.time() * 1000),
        body,
        client_id=client_id,
        account_id=account_id,
        grant_type="authorization_code",
        launch_patient=launch_patient,
    )
    return token


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    settings = Settings(database_url=db_url, base_url=BASE, node_id="acl-test", env="test")
    upgrade(db_url)
    store = build_store(settings)
    ctx = build_auth_context(settings)
    app = create_app(settings, store)
    w = World(TestClient(app, base_url=BASE, raise_server_exceptions=False), store)
    with store.unit_of_work() as uow:
        repo, conn = uow.repo, uow.repo.conn
        for name in ("h1", "h2"):
            w.ids[name] = repo.create(
                "Organization", {"resourceType": "Organization", "name": f"医院 {name}"}
            )["id"]
        for name in ("p1", "p2"):
            w.ids[name] = repo.create(
                "Patient", {"resourceType": "Patient", "name": [{"text": f"病人 {name}"}]}
            )["id"]
        admin = register_staff(
            conn,
            repo,
            ctx,
            role="regional_admin",
            login_name=f"ra{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
        )
        app_client, _ = create_client(
            conn,
            name="acl-tests",
            scopes="user/*.cruds patient/*.cruds launch/patient",
            kind="public",
            redirect_uris=["http://localhost/cb"],
        )
        system_client, _ = create_client(conn, name="acl-system", scopes="system/*.cruds")
        w.tokens["system"] = _mint(conn, system_client, None, "system/*.cruds")
        for role, org in (
            ("doctor", "h1"),
            ("doctor2", "h2"),
            ("nurse", "h1"),
            ("pharmacist", "h1"),
        ):
            licence = uuid.uuid4().hex[:12]
            kind = "doctor" if role.startswith("doctor") else role
            system = ROLE_LICENCES[kind][0]
            prac = repo.create(
                "Practitioner",
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": system, "value": licence}],
                    "name": [{"text": role}],
                },
            )
            pr = register_practitioner_role(
                conn,
                repo,
                ctx,
                practitioner_ref=f"Practitioner/{prac['id']}",
                organization_ref=f"Organization/{w.ids[org]}",
                role=kind,
                licence_number=licence,  # type: ignore[arg-type]
            )
            verify_practitioner_role(conn, repo, ctx, f"PractitionerRole/{pr['id']}", admin.id)
            w.ids[f"role:{role}"] = f"PractitionerRole/{pr['id']}"
            w.ids[f"practitioner:{role}"] = prac["id"]
            acct = register_staff(
                conn,
                repo,
                ctx,
                role=kind,
                login_name=f"{role}{uuid.uuid4().hex[:6]}",
                password="correct horse battery 9",
                practitioner_ref=f"Practitioner/{prac['id']}",
            )
            w.tokens[role] = _mint(conn, app_client, acct.id, "user/*.cruds")
        ia = register_staff(
            conn,
            repo,
            ctx,
            role="institution_admin",
            login_name=f"ia{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
            organization_ref=f"Organization/{w.ids['h1']}",
        )
        w.tokens["institution_admin"] = _mint(conn, app_client, ia.id, "user/*.cruds")
        w.tokens["regional_admin"] = _mint(conn, app_client, admin.id, "user/*.cruds")
        reg = register_staff(
            conn,
            repo,
            ctx,
            role="regulator",
            login_name=f"rg{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
        )
        w.tokens["regulator"] = _mint(conn, app_client, reg.id, "user/*.cruds")
        from carenet.access.accounts import register_patient

        for name, phone in (("p1", "13800000001"), ("p2", "13800000002")):
            acct = register_patient(conn, ctx, phone=phone)
            w.tokens[f"patient:{name}"] = _mint(
                conn,
                app_client,
                acct.id,
                "patient/*.cruds",
                launch_patient=f"Patient/{w.ids[name]}",
            )
        w.tokens["patient"] = w.tokens["patient:p1"]
        w.ids["admin_account"] = admin.id
        uow.commit()
    w.ctx = ctx
    with w.client:
        yield w
    store.engine.dispose()
