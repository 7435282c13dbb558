"""The CapabilityStatement is valid FHIR and states what the server really does."""

from __future__ import annotations

from carenet.fhir.validation import validate_resource


def test_the_capability_statement_is_itself_valid_r4(client):
    cs = client.get("/fhir/metadata").json()
    errors = [i for i in validate_resource(cs) if i.severity in ("error", "fatal")]
    assert errors == []


def test_every_advertised_search_parameter_is_accepted_under_strict_handling(client):
    cs = client.get("/fhir/metadata").json()
    for res in cs["rest"][0]["resource"]:
        if res["type"] == "AuditEvent":
            continue  # served from the audit chain: see the AuditEvent test below
        for p in res["searchParam"]:
            if p["type"] == "composite":
                continue
            r = client.get(
                f"/fhir/{res['type']}",
                params={f"{p['name']}:missing": "true", "_count": "1"},
                headers={"Prefer": "handling=strict"},
            )
            assert r.status_code == 200, (res["type"], p["name"], r.text)


def test_an_unadvertised_parameter_is_refused_under_strict_and_reported_under_lenient(client):
    strict = client.get(
        "/fhir/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["shoe-size"]
    lenient = client.get("/fhir/Patient", params={"shoe-size": "42"})
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json().get("entry", []) if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    assert "shoe-size" in outcome[0]["resource"]["issue"][0]["diagnostics"]


def test_audit_event_search_parameters_are_exactly_those_advertised(client):
    cs = client.get("/fhir/metadata").json()
    audit = next(r for r in cs["rest"][0]["resource"] if r["type"] == "AuditEvent")
    assert [i["code"] for i in audit["interaction"]] == ["read", "search-type"]
    samples = {
        "_id": "0-1",
        "action": "R",
        "agent": "Practitioner/x",
        "date": "ge2026-01-01",
        "outcome": "0",
        "patient": "Patient/x",
    }
    assert {p["name"] for p in audit["searchParam"]} == set(samples)
    for name, value in samples.items():
        r = client.get(
            "/fhir/AuditEvent", params={name: value}, headers={"Prefer": "handling=strict"}
        )
        assert r.status_code == 200, (name, r.text)
    r = client.get(
        "/fhir/AuditEvent", params={"entity-type": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert r.status_code == 400
