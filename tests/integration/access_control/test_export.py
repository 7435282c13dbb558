"""Patient/$everything: a patient's record handed out as one Bundle, only as far as the caller
may read it, and audited as an export naming every resource (ONL-10); on both stores."""

from __future__ import annotations

import json

from carenet.audit import audit_events

FHIR = "/fhir"


def obs(patient_id: str, text: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def _refs(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}


def _exports(world) -> list[dict]:  # noqa: ANN001
    with world.store.engine.connect() as conn:
        rows = conn.execute(audit_events.select().where(audit_events.c.subtype == "export"))
        return [dict(r._mapping) for r in rows]


def test_a_patient_exports_their_whole_record_and_the_export_is_audited(world) -> None:  # noqa: ANN001
    c, p1, p2 = world.client, world.ids["p1"], world.ids["p2"]
    mine = [
        c.post(f"{FHIR}/Observation", json=obs(p1, t), headers=world.as_("patient:p1")).json()
        for t in ("血压", "血糖")
    ]
    by_h1 = c.post(
        f"{FHIR}/Observation", json=obs(p1, "心电图"), headers=world.as_("doctor")
    ).json()
    c.post(f"{FHIR}/Observation", json=obs(p2, "其他人"), headers=world.as_("patient:p2"))
    r = c.get(f"{FHIR}/Patient/{p1}/$everything", headers=world.as_("patient:p1"))
    assert r.status_code == 200, r.text
    bundle = r.json()
    expected = {f"Patient/{p1}"} | {f"Observation/{o['id']}" for o in [*mine, by_h1]}
    assert _refs(bundle) == expected
    assert bundle["total"] == 4
    [event] = _exports(world)
    assert event["patient"] == f"Patient/{p1}"
    entities = event["entities"]
    entities = json.loads(entities) if isinstance(entities, str) else entities
    assert set(entities) == expected
    assert event["outcome"] == 0


def test_staff_export_only_what_they_may_see_and_others_get_nothing(world) -> None:  # noqa: ANN001
    c, p1 = world.client, world.ids["p1"]
    c.post(f"{FHIR}/Observation", json=obs(p1, "血压"), headers=world.as_("patient:p1"))
    by_h1 = c.post(
        f"{FHIR}/Observation", json=obs(p1, "心电图"), headers=world.as_("doctor")
    ).json()
    # The regulator reads everything; a doctor at another hospital, another patient, an
    # institution admin and an anonymous caller get nothing at all.
    r = c.get(f"{FHIR}/Patient/{p1}/$everything", headers=world.as_("regulator"))
    assert r.status_code == 200
    assert r.json()["total"] == 3
    for who, status in (
        ("doctor2", 404),
        ("patient:p2", 404),
        ("institution_admin", 403),
        (None, 401),
    ):
        r = c.get(f"{FHIR}/Patient/{p1}/$everything", headers=world.as_(who))
        assert r.status_code == status, (who, r.text)
        assert "心电图" not in r.text
    assert len([e for e in _exports(world) if e["outcome"] == 0]) == 1
    assert by_h1["id"]
