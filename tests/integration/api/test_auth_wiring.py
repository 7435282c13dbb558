"""The main app speaks OAuth2/SMART: discovery, client-credentials tokens, scopes enforced on
every FHIR interaction (Bundle entries included), token holders named in the audit chain."""

from __future__ import annotations

import json

import pytest
from tests.integration.api.conftest import client_credentials_token

from carenet.bootstrap import build_store

FHIR = "/fhir"


@pytest.fixture
def token_for(client, settings):  # noqa: ANN201 - returns a callable
    def issue(scope: str) -> tuple[str, str]:
        store = build_store(settings)
        try:
            return client_credentials_token(store, client, scope)
        finally:
            store.engine.dispose()

    return issue


def test_smart_configuration_is_served_at_the_root_and_under_fhir(client):
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        r = client.get(path)
        assert r.status_code == 200, r.text
        conf = r.json()
        assert conf["token_endpoint"].endswith("/auth/token")
        assert "client_credentials" in conf["grant_types_supported"]
        assert conf["code_challenge_methods_supported"] == ["S256"]


def test_scopes_bound_what_a_token_may_do(client, token_for, store_counts):
    client_id, token = token_for("system/Patient.rs system/Observation.cs")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{FHIR}/Patient", headers=auth).status_code == 200
    before = store_counts()
    refused = client.post(f"{FHIR}/Patient", json={"resourceType": "Patient"}, headers=auth)
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "OAUTH-INSUFFICIENT-SCOPE"
    assert "insufficient_scope" in refused.headers["WWW-Authenticate"]
    assert store_counts() == before
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    assert client.post(f"{FHIR}/Observation", json=obs, headers=auth).status_code == 201
    assert client.get(f"{FHIR}/Observation", headers=auth).status_code == 200
    # read needs r, which this token lacks for Observation
    assert client.get(f"{FHIR}/Observation/x", headers=auth).status_code == 403
    # a system-level search would reach every type
    assert client.get(FHIR, headers=auth).status_code == 403


def test_a_transaction_with_one_entry_outside_the_scopes_writes_nothing(
    client, token_for, store_counts
):
    _, token = token_for("system/Patient.c")
    before = store_counts()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Organization", "name": "x"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    r = client.post(FHIR, json=bundle, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert store_counts() == before


def test_token_holders_and_token_grants_are_named_in_the_audit_chain(client, token_for, audit_log):
    client_id, token = token_for("system/Patient.cruds")
    client.post(
        f"{FHIR}/Patient",
        json={"resourceType": "Patient"},
        headers={"Authorization": f"Bearer {token}"},
    )
    events = audit_log()
    grant = next(e for e in events if e["subtype"] == "login")
    assert json.loads(grant["detail"])["step"] == "token"
    create = next(e for e in events if e["subtype"] == "create")
    assert create["agent"] == f"urn:carenet:client:{client_id}"


def test_a_forged_token_is_refused_with_401_and_audited(client, audit_log, store_counts):
    before = store_counts()
    r = client.get(f"{FHIR}/Patient", headers={"Authorization": "Bearer forged-token-value"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert store_counts() == before
    assert audit_log()[-1]["outcome"] == 4
