"""The CapabilityStatement is valid FHIR and states what the server really does."""

from __future__ import annotations

from carenet.fhir.validation import validate_resource


def test_the_capability_statement_is_itself_valid_r4(client):
    cs = client.get("/fhir/metadata").json()
    errors = [i for i in validate_resource(cs) if i.severity in ("error", "fatal")]
    assert errors == []


def test_every_advertised_search_parameter_is_accepted_under_strict_handling(client):
    cs = client.get("/fhir/metadata").json()
    wanted = {
        "Patient",
        "Observation",
        "Appointment",
        "Slot",
        "MedicationRequest",
        "AuditEvent",
        "Coverage",
        "Provenance",
    }
    for res in cs["rest"][0]["resource"]:
        if res["type"] not in wanted:
            continue
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
