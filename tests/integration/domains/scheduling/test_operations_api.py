"""The operations as the FHIR API states them (CapabilityStatement, OperationDefinitions) and as
the audit chain records them, on both stores."""

from __future__ import annotations

import json

from sqlalchemy import select
from tests.integration.domains.scheduling.conftest import Env

from carenet.audit import audit_events
from carenet.fhir.validation import validate_resource


def test_the_capability_statement_lists_each_operation_with_its_definition(env: Env) -> None:
    cap = env.client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in cap["rest"][0]["resource"]}
    names = {t: [o["name"] for o in resources[t].get("operation", [])] for t in resources}
    assert names["Appointment"] == ["book", "cancel", "checkin", "noshow", "queue", "reschedule"]
    assert names["Schedule"] == ["generate", "stop-clinic"]
    assert names["PractitionerRole"] == ["call-next"]
    assert names["Patient"] == ["everything"]
    assert names["Observation"] == []
    for t in ("Appointment", "Schedule", "PractitionerRole"):
        for o in resources[t]["operation"]:
            definition_id = o["definition"].rsplit("/", 1)[1]
            r = env.client.get(
                f"/fhir/OperationDefinition/{definition_id}", headers=env.headers("patient0")
            )
            assert r.status_code == 200, r.text
            od = r.json()
            assert od["url"] == o["definition"]
            assert od["code"] == o["name"]
            assert [i for i in validate_resource(od) if i.severity in ("error", "fatal")] == []


def _events(env: Env) -> list[dict]:
    with env.store.engine.connect() as conn:
        rows = conn.execute(
            select(audit_events).where(audit_events.c.subtype == "operation")
        ).mappings()
        out = []
        for r in rows:
            e = dict(r)
            for k in ("detail", "entities"):
                if isinstance(e[k], str):
                    e[k] = json.loads(e[k])
            out.append(e)
        return out


def test_a_booking_and_a_refused_one_are_audited_with_the_patient(env: Env) -> None:
    slot = env.generate("2027-03-02")[0]
    p0, p1 = env.clinic.patients[:2]
    assert env.book("patient0", slot, p0).status_code == 200
    assert env.book("patient1", slot, p1).status_code == 409
    events = [
        e for e in _events(env) if (e["detail"] or {}).get("operation") == "Appointment/$book"
    ]
    ok = [e for e in events if e["outcome"] == 0]
    assert len(ok) == 1
    assert ok[0]["patient"] == f"Patient/{p0}"
    assert ok[0]["agent_role"] == "patient"
    entities = ok[0]["entities"]
    assert any(x.startswith("Appointment/") for x in entities)
    assert f"Slot/{slot['id']}" in entities
    refused = [e for e in _events(env) if e["outcome"] == 4]
    assert len(refused) == 1
    assert refused[0]["detail"]["codes"] == ["APPT-SLOT-FULL"]
    # "Who looked at my record": the patient finds the booking among events about them.
    r = env.client.get(
        "/fhir/AuditEvent", params={"patient": f"Patient/{p0}"}, headers=env.headers("patient0")
    )
    assert r.status_code == 200, r.text
    subtypes = [
        c.get("code") for e in r.json().get("entry", []) for c in e["resource"].get("subtype", [])
    ]
    assert "operation" in subtypes
