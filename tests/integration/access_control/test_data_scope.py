"""Which instances each actor reaches: own compartment, own institution, consent grants,
break-glass; nothing leaks through read, search, _include, chains, _has or history."""

from __future__ import annotations

import json
from urllib.parse import quote

from carenet.access.practitioners import suspend_practitioner_role
from carenet.audit import audit_events
from carenet.fhir.identifiers import OWNER_ORGANIZATION

FHIR = "/fhir"


def obs(patient_id: str, text: str = "血压") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def _ids(bundle: dict) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") != "outcome"
    }


def test_a_patient_sees_only_their_own_compartment(world):
    c, p1, p2 = world.client, world.ids["p1"], world.ids["p2"]
    mine = c.post(f"{FHIR}/Observation", json=obs(p1), headers=world.as_("patient:p1"))
    assert mine.status_code == 201, mine.text
    theirs = c.post(f"{FHIR}/Observation", json=obs(p2), headers=world.as_("system")).json()
    h = world.as_("patient:p1")
    assert c.get(f"{FHIR}/Observation/{theirs['id']}", headers=h).status_code == 404
    assert c.get(f"{FHIR}/Observation/{theirs['id']}/_history/1", headers=h).status_code == 404
    assert c.get(f"{FHIR}/Observation/{theirs['id']}/_history", headers=h).status_code == 404
    found = c.get(f"{FHIR}/Observation", headers=h).json()
    assert _ids(found) == {mine.json()["id"]} and found["total"] == 1
    # no leak through _include, chains or _has
    inc = c.get(f"{FHIR}/Observation", params={"_include": "Observation:subject"}, headers=h).json()
    assert _ids(inc) == {mine.json()["id"], p1}
    assert (
        _ids(
            c.get(
                f"{FHIR}/Observation", params={"subject:Patient.name": "病人 p2"}, headers=h
            ).json()
        )
        == set()
    )
    assert _ids(
        c.get(
            f"{FHIR}/Patient", params={"_has:Observation:subject:code:text": "血压"}, headers=h
        ).json()
    ) == {p1}
    assert c.get(f"{FHIR}/Patient/{p2}", headers=h).status_code == 404
    # writing about someone else is refused and changes nothing
    r = c.post(f"{FHIR}/Observation", json=obs(p2), headers=h)
    assert r.status_code == 403 and "ACCESS-OUT-OF-SCOPE" in r.text
    # and a patient never prescribes (ONL-5)
    rx = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "x"},
        "subject": {"reference": f"Patient/{p1}"},
    }
    assert c.post(f"{FHIR}/MedicationRequest", json=rx, headers=h).status_code == 403


def test_staff_see_their_institutions_data_and_what_a_consent_grants(world):
    c, p2, h1, h2 = world.client, world.ids["p2"], world.ids["h1"], world.ids["h2"]
    made = c.post(f"{FHIR}/Observation", json=obs(p2), headers=world.as_("doctor")).json()
    assert {"system": OWNER_ORGANIZATION, "code": h1} in made["meta"]["tag"]
    other = world.as_("doctor2")
    assert c.get(f"{FHIR}/Observation/{made['id']}", headers=other).status_code == 404
    assert made["id"] not in _ids(c.get(f"{FHIR}/Observation", headers=other).json())
    # The nurse at the same hospital sees it.
    assert c.get(f"{FHIR}/Observation/{made['id']}", headers=world.as_("nurse")).status_code == 200
    # p2 consents to hospital 2 seeing their record.
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{p2}"},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": {
            "type": "permit",
            "actor": [
                {"role": {"text": "可查阅"}, "reference": {"reference": f"Organization/{h2}"}}
            ],
        },
    }
    # A consent that denies hospital 2, or whose permit has ended, opens nothing (PRIV-1).
    for provision in (
        {"type": "deny", "actor": consent["provision"]["actor"]},
        {**consent["provision"], "period": {"end": "2020-12-31"}},
    ):
        r = c.post(
            f"{FHIR}/Consent",
            json={**consent, "provision": provision},
            headers=world.as_("patient:p2"),
        )
        assert r.status_code == 201, r.text
        assert c.get(f"{FHIR}/Observation/{made['id']}", headers=other).status_code == 404
        assert made["id"] not in _ids(c.get(f"{FHIR}/Observation", headers=other).json())
    r = c.post(f"{FHIR}/Consent", json=consent, headers=world.as_("patient:p2"))
    assert r.status_code == 201, r.text
    assert c.get(f"{FHIR}/Observation/{made['id']}", headers=other).status_code == 200
    assert made["id"] in _ids(c.get(f"{FHIR}/Observation", headers=other).json())


def test_owner_tags_belong_to_the_server(world):
    c, p2, h1, h2 = world.client, world.ids["p2"], world.ids["h1"], world.ids["h2"]
    forged = {**obs(p2), "meta": {"tag": [{"system": OWNER_ORGANIZATION, "code": h1}]}}
    made = c.post(f"{FHIR}/Observation", json=forged, headers=world.as_("doctor2")).json()
    owners = {t["code"] for t in made["meta"]["tag"] if t["system"] == OWNER_ORGANIZATION}
    assert owners == {h2}
    # an update cannot move it to another institution either
    moved = {**made, "meta": {"tag": [{"system": OWNER_ORGANIZATION, "code": h1}]}}
    again = c.put(
        f"{FHIR}/Observation/{made['id']}", json=moved, headers=world.as_("doctor2")
    ).json()
    assert {t["code"] for t in again["meta"]["tag"] if t["system"] == OWNER_ORGANIZATION} == {h2}


def test_break_glass_reads_beyond_scope_and_is_flagged_in_the_audit_chain(world):
    c, p2 = world.client, world.ids["p2"]
    made = c.post(f"{FHIR}/Observation", json=obs(p2), headers=world.as_("doctor")).json()
    r = c.get(
        f"{FHIR}/Observation/{made['id']}",
        headers=world.as_("doctor2", **{"X-Break-Glass-Reason": quote("急诊抢救，患者昏迷")}),
    )
    assert r.status_code == 200
    with world.store.engine.connect() as conn:
        rows = (
            conn.execute(audit_events.select().where(audit_events.c.subtype == "break-glass"))
            .mappings()
            .all()
        )
    assert len(rows) == 1 and rows[0]["purpose"] == "急诊抢救，患者昏迷"
    assert rows[0]["agent"] == f"Practitioner/{world.ids['practitioner:doctor2']}"


def test_the_regulator_reads_everything_and_writes_nothing_clinical(world):
    c, p1 = world.client, world.ids["p1"]
    made = c.post(f"{FHIR}/Observation", json=obs(p1), headers=world.as_("doctor")).json()
    h = world.as_("regulator")
    assert c.get(f"{FHIR}/Observation/{made['id']}", headers=h).status_code == 200
    assert c.post(f"{FHIR}/Observation", json=obs(p1), headers=h).status_code == 403
    assert (
        c.get(f"{FHIR}/AuditEvent", params={"patient": f"Patient/{p1}"}, headers=h).json()["total"]
        >= 1
    )


def test_a_patient_sees_who_looked_at_their_record_and_nobody_elses(world):
    c, p1, p2 = world.client, world.ids["p1"], world.ids["p2"]
    made = c.post(f"{FHIR}/Observation", json=obs(p1), headers=world.as_("doctor")).json()
    c.get(f"{FHIR}/Observation/{made['id']}", headers=world.as_("nurse"))
    mine = c.get(f"{FHIR}/AuditEvent", headers=world.as_("patient:p1")).json()
    agents = {
        a["who"]["reference"]
        for e in mine["entry"]
        for a in e["resource"]["agent"]
        if "reference" in a.get("who", {})
    }
    assert f"Practitioner/{world.ids['practitioner:nurse']}" in agents
    assert all(
        e["resource"]["entity"][0]["what"]["reference"] != f"Patient/{p2}"
        for e in mine["entry"]
        if e["resource"].get("entity")
    )
    assert (
        c.get(
            f"{FHIR}/AuditEvent",
            params={"patient": f"Patient/{p2}"},
            headers=world.as_("patient:p1"),
        ).status_code
        == 403
    )
    assert c.get(f"{FHIR}/AuditEvent", headers=world.as_("doctor")).status_code == 403


def test_a_suspended_role_stops_acting_on_the_next_request(world):
    c = world.client
    assert c.get(f"{FHIR}/Observation", headers=world.as_("doctor")).status_code == 200
    with world.store.unit_of_work() as uow:
        suspend_practitioner_role(
            uow.repo.conn,
            uow.repo,
            world.ctx,
            world.ids["role:doctor"],
            world.ids["admin_account"],
            "执业证书到期",
        )
        uow.commit()
    r = c.get(f"{FHIR}/Observation", headers=world.as_("doctor"))
    assert r.status_code == 403 and "AUTH-ROLE-NOT-ACTIVE" in r.text


def test_anonymous_callers_see_the_directory_only(world):
    c = world.client
    assert c.get(f"{FHIR}/Organization").status_code == 200
    r = c.get(f"{FHIR}/Patient")
    assert r.status_code == 401 and 'Bearer realm="carenet"' in r.headers["WWW-Authenticate"]
    assert c.get(FHIR).status_code == 401
    assert json.loads(c.get(f"{FHIR}/metadata").text)["resourceType"] == "CapabilityStatement"


def test_a_referral_opens_the_patients_record_to_the_receiving_institution(world):
    c, p2, h2 = world.client, world.ids["p2"], world.ids["h2"]
    note = c.post(f"{FHIR}/Observation", json=obs(p2), headers=world.as_("doctor")).json()
    other = world.as_("doctor2")
    assert c.get(f"{FHIR}/Observation/{note['id']}", headers=other).status_code == 404
    referral = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"text": "双向转诊 referral"}],
        "code": {"text": "心内科会诊"},
        "subject": {"reference": f"Patient/{p2}"},
        "performer": [{"reference": f"Organization/{h2}"}],
    }
    made = c.post(f"{FHIR}/ServiceRequest", json=referral, headers=world.as_("doctor"))
    assert made.status_code == 201, made.text
    assert c.get(f"{FHIR}/Observation/{note['id']}", headers=other).status_code == 200
    # completing the referral closes the record again
    done = {**made.json(), "status": "completed"}
    assert (
        c.put(
            f"{FHIR}/ServiceRequest/{done['id']}", json=done, headers=world.as_("doctor")
        ).status_code
        == 200
    )
    assert c.get(f"{FHIR}/Observation/{note['id']}", headers=other).status_code == 404


def test_doctors_and_pharmacists_get_a_signing_key_when_their_role_is_verified(world):
    from carenet.crypto.keystore import active_key

    with world.store.engine.connect() as conn:
        have = {
            role: active_key(conn, f"Practitioner/{world.ids[f'practitioner:{role}']}") is not None
            for role in ("doctor", "doctor2", "pharmacist", "nurse")
        }
    assert have == {"doctor": True, "doctor2": True, "pharmacist": True, "nurse": False}


def test_a_backend_service_writes_for_the_institution_it_names(world):
    c, p2, h2 = world.client, world.ids["p2"], world.ids["h2"]
    h = world.as_("system", **{"X-Acting-Organization": f"Organization/{h2}"})
    made = c.post(f"{FHIR}/Observation", json=obs(p2), headers=h).json()
    assert {"system": OWNER_ORGANIZATION, "code": h2} in made["meta"]["tag"]
    # ... so that institution's staff see it and the other's do not.
    assert (
        c.get(f"{FHIR}/Observation/{made['id']}", headers=world.as_("doctor2")).status_code == 200
    )
    assert c.get(f"{FHIR}/Observation/{made['id']}", headers=world.as_("doctor")).status_code == 404
    plain = c.post(f"{FHIR}/Observation", json=obs(p2), headers=world.as_("system")).json()
    assert OWNER_ORGANIZATION not in {t["system"] for t in plain.get("meta", {}).get("tag", [])}
