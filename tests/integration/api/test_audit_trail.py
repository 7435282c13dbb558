"""Every FHIR interaction leaves an AuditEvent in the hash chain, in the same transaction; a
refused one too; AuditEvents are readable through FHIR and never writable."""

from __future__ import annotations

import json
import uuid

from carenet.audit import verify
from carenet.bootstrap import build_store

FHIR = "/fhir"


def _actions(audit_log) -> list[dict]:  # noqa: ANN001
    """The events after the test client's own token grant (a 'login' by client credentials)."""
    events = audit_log()
    assert events[0]["subtype"] == "login" and json.loads(events[0]["detail"])["step"] == "token"
    return events[1:]


def _patient(client) -> dict:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": uuid.uuid4().hex}],
    }
    return client.post(f"{FHIR}/Patient", json=body).json()


def test_create_read_search_update_delete_are_each_audited_with_the_patient(client, audit_log):
    p = _patient(client)
    ref = f"Patient/{p['id']}"
    client.get(f"{FHIR}/{ref}")
    client.get(f"{FHIR}/Patient", params={"_id": p["id"]})
    client.put(f"{FHIR}/{ref}", json={**p, "active": True})
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "bp"},
        "subject": {"reference": ref},
    }
    o = client.post(f"{FHIR}/Observation", json=obs).json()
    client.delete(f"{FHIR}/Observation/{o['id']}")
    events = _actions(audit_log)
    assert [(e["subtype"], e["action"], e["outcome"], e["patient"]) for e in events] == [
        ("create", "C", 0, ref),
        ("read", "R", 0, ref),
        ("search", "E", 0, ref),
        ("update", "U", 0, ref),
        ("create", "C", 0, ref),
        ("delete", "D", 0, None),
    ]
    assert json.loads(events[0]["entities"]) == [ref]
    assert events[2]["query"] == f"_id={p['id']}"
    assert json.loads(events[5]["entities"]) == [f"Observation/{o['id']}"]
    agent = events[0]["agent"]
    assert agent.startswith("urn:carenet:client:")
    assert all(
        e["agent"] == agent and e["agent_role"] == "system" and e["source_address"] for e in events
    )


def test_a_refused_request_is_audited_as_a_failure(client, audit_log):
    r = client.post(f"{FHIR}/Patient", json={"resourceType": "Patient", "gender": "boy"})
    assert r.status_code == 400
    (event,) = _actions(audit_log)
    assert event["subtype"] == "create" and event["outcome"] == 4
    assert json.loads(event["detail"])["status"] == 400


def test_a_transaction_is_audited_once_per_patient_it_touches(client, audit_log):
    pu = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": pu,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": pu},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Organization", "name": "某医院"},
                "request": {"method": "POST", "url": "Organization"},
            },
        ],
    }
    out = client.post(FHIR, json=bundle).json()
    pid = out["entry"][0]["resource"]["id"]
    events = _actions(audit_log)
    assert sorted((e["subtype"], e["patient"] or "") for e in events) == [
        ("transaction", ""),
        ("transaction", f"Patient/{pid}"),
    ]
    with_patient = next(e for e in events if e["patient"])
    assert sorted(json.loads(with_patient["entities"])) == sorted(
        [f"Patient/{pid}", f"Observation/{out['entry'][1]['resource']['id']}"]
    )


def test_audit_events_are_searchable_by_patient_and_readable_but_never_writable(client, audit_log):
    p = _patient(client)
    client.get(f"{FHIR}/Patient/{p['id']}")
    found = client.get(f"{FHIR}/AuditEvent", params={"patient": f"Patient/{p['id']}"}).json()
    assert found["total"] == 2
    kinds = [e["resource"]["subtype"][0]["code"] for e in found["entry"]]
    assert kinds == ["read", "create"]  # newest first
    one = found["entry"][0]["resource"]
    assert client.get(f"{FHIR}/AuditEvent/{one['id']}").json()["id"] == one["id"]
    for method in ("post", "put", "delete", "patch"):
        url = f"{FHIR}/AuditEvent" if method == "post" else f"{FHIR}/AuditEvent/{one['id']}"
        r = client.request(method.upper(), url, content=json.dumps(one))
        assert r.status_code == 405, (method, r.text)
    assert (
        client.post(
            FHIR,
            json={
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"resource": one, "request": {"method": "POST", "url": "AuditEvent"}}],
            },
        ).json()["entry"][0]["response"]["status"]
        == "405"
    )


def test_the_chain_verifies_after_a_mix_of_requests(client, settings):
    for _ in range(5):
        p = _patient(client)
        client.get(f"{FHIR}/Patient/{p['id']}")
        client.post(f"{FHIR}/Patient", json={"resourceType": "Patient", "birthDate": "1999-02-30"})
    store = build_store(settings)
    try:
        with store.engine.connect() as conn:
            report = verify(conn)
    finally:
        store.engine.dispose()
    assert report.ok, report.problems
    assert report.events == 1 + 15  # the client's token grant, then the requests


def test_a_transaction_refused_after_writing_is_rolled_back_and_audited_once(
    client, audit_log, store_counts
):
    # The first entry updates a patient (a write sent to the database), the last one fails its
    # version check: the refusal must not commit the first entry together with its audit event.
    p = _patient(client)
    before = store_counts()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**p, "active": True},
                "request": {"method": "PUT", "url": f"Patient/{p['id']}"},
            },
            {
                "resource": {**p, "active": False},
                "request": {"method": "PUT", "url": f"Patient/{p['id']}", "ifMatch": 'W/"9"'},
            },
        ],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code in (409, 412), r.text
    assert client.get(f"{FHIR}/Patient/{p['id']}").json()["meta"]["versionId"] == "1"
    assert store_counts() == before
    events = _actions(audit_log)
    # After the patient's creation: the refusal's one event, then the read's; nothing else.
    assert [(e["subtype"], e["outcome"]) for e in events[1:]] == [("transaction", 4), ("read", 0)]


def test_when_the_refusal_cannot_be_committed_in_place_it_is_audited_apart_and_still_refused(
    client, audit_log, monkeypatch
):
    # A refusal's audit event normally commits in the request's own transaction; if the
    # database refuses that, the client must still get the real refusal (not a 500) and the
    # event must still be written, in a transaction of its own.
    from sqlalchemy.exc import DBAPIError

    import carenet.api.app as app_module

    real = app_module.append_many
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 1:
            raise DBAPIError("INSERT INTO audit_events ...", {}, Exception("connection lost"))
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "append_many", flaky)
    r = client.post(f"{FHIR}/Patient", json={"resourceType": "Patient", "gender": "boy"})
    assert r.status_code == 400, r.text
    assert calls["n"] == 2
    (event,) = _actions(audit_log)
    assert event["subtype"] == "create" and event["outcome"] == 4


def test_system_history_is_read_only(client):
    for method in ("POST", "PUT", "DELETE"):
        r = client.request(method, f"{FHIR}/_history", content=b"{}")
        assert r.status_code == 405, (method, r.text)
