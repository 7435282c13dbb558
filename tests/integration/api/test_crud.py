"""CRUD, versions, conditional interactions and errors of the FHIR REST API, on both stores."""

from __future__ import annotations

import uuid

import pytest

FHIR = "/fhir"


def patient(**extra: object) -> dict:
    ident = uuid.uuid4().hex
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": ident}],
        "name": [{"family": "王", "given": ["小明"], "text": "王小明"}],
        "gender": "male",
        "birthDate": "1980-05-17",
        **extra,
    }


def test_create_assigns_a_uuid_version_1_and_server_meta(client):
    r = client.post(f"{FHIR}/Patient", json=patient())
    assert r.status_code == 201, r.text
    body = r.json()
    uuid.UUID(body["id"])
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["source"] == "urn:carenet:node:test"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert r.headers["content-type"].startswith("application/fhir+json")


def test_create_ignores_a_client_id_and_read_returns_what_was_stored(client):
    r = client.post(f"{FHIR}/Patient", json=patient(id="client-chosen"))
    created = r.json()
    assert created["id"] != "client-chosen"
    got = client.get(f"{FHIR}/Patient/{created['id']}")
    assert got.status_code == 200
    assert got.json() == created
    assert got.headers["ETag"] == 'W/"1"'


def test_update_makes_version_2_and_every_version_stays_readable(client):
    created = client.post(f"{FHIR}/Patient", json=patient()).json()
    changed = {**created, "gender": "female"}
    r = client.put(f"{FHIR}/Patient/{created['id']}", json=changed)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    v1 = client.get(f"{FHIR}/Patient/{created['id']}/_history/1").json()
    v2 = client.get(f"{FHIR}/Patient/{created['id']}/_history/2").json()
    assert v1["gender"] == "male" and v2["gender"] == "female"
    assert client.get(f"{FHIR}/Patient/{created['id']}/_history/3").status_code == 404


def test_update_of_an_unknown_id_creates_it_with_that_id(client):
    rid = f"p-{uuid.uuid4().hex[:10]}"
    r = client.put(f"{FHIR}/Patient/{rid}", json=patient(id=rid))
    assert r.status_code == 201, r.text
    assert r.json()["id"] == rid
    assert r.json()["meta"]["versionId"] == "1"


def test_if_match_with_a_stale_version_is_refused_with_412_and_changes_nothing(
    client, store_counts
):
    created = client.post(f"{FHIR}/Patient", json=patient()).json()
    client.put(f"{FHIR}/Patient/{created['id']}", json={**created, "gender": "other"})
    before = store_counts()
    r = client.put(
        f"{FHIR}/Patient/{created['id']}",
        json={**created, "gender": "female"},
        headers={"If-Match": 'W/"1"'},
    )
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    assert store_counts() == before
    ok = client.put(
        f"{FHIR}/Patient/{created['id']}",
        json={**created, "gender": "female"},
        headers={"If-Match": 'W/"2"'},
    )
    assert ok.status_code == 200 and ok.json()["meta"]["versionId"] == "3"


def test_delete_answers_410_afterwards_and_keeps_history(client):
    created = client.post(f"{FHIR}/Patient", json=patient()).json()
    pid = created["id"]
    assert client.delete(f"{FHIR}/Patient/{pid}").status_code == 204
    gone = client.get(f"{FHIR}/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert client.get(f"{FHIR}/Patient/{pid}/_history/1").status_code == 200
    hist = client.get(f"{FHIR}/Patient/{pid}/_history").json()
    assert [e["response"]["etag"] for e in hist["entry"]] == ['W/"2"', 'W/"1"']
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in hist["entry"][0]
    # Deleting again is harmless; re-creating by PUT continues the version sequence.
    assert client.delete(f"{FHIR}/Patient/{pid}").status_code == 204
    again = client.put(
        f"{FHIR}/Patient/{pid}", json={k: v for k, v in created.items() if k != "meta"}
    )
    assert again.status_code == 201 and again.json()["meta"]["versionId"] == "3"


def test_read_of_an_unknown_id_is_404_and_of_an_unknown_type_is_404(client):
    r = client.get(f"{FHIR}/Patient/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    r = client.get(f"{FHIR}/Patientx/1")
    assert r.status_code == 404


def test_a_bad_id_in_the_url_is_400(client):
    r = client.get(f"{FHIR}/Patient/" + "x" * 65)
    assert r.status_code == 400


def test_json_patch_changes_one_element_and_makes_a_new_version(client):
    created = client.post(f"{FHIR}/Patient", json=patient()).json()
    ops = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/active", "value": True},
    ]
    r = client.patch(
        f"{FHIR}/Patient/{created['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["gender"] == "female" and body["active"] is True and body["meta"]["versionId"] == "2"
    )


def test_a_patch_that_makes_the_resource_invalid_is_refused_and_changes_nothing(
    client, store_counts
):
    created = client.post(f"{FHIR}/Patient", json=patient()).json()
    before = store_counts()
    ops = [{"op": "replace", "path": "/gender", "value": "boy"}]
    r = client.patch(
        f"{FHIR}/Patient/{created['id']}",
        json=ops,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 400
    assert any("Patient.gender" in e for i in r.json()["issue"] for e in i.get("expression", []))
    assert store_counts() == before


def test_conditional_create_returns_the_existing_match_instead_of_a_duplicate(client, store_counts):
    p = patient()
    ident = p["identifier"][0]["value"]
    header = {"If-None-Exist": f"identifier=urn:test:mrn|{ident}"}
    first = client.post(f"{FHIR}/Patient", json=p, headers=header)
    assert first.status_code == 201
    before = store_counts()
    second = client.post(f"{FHIR}/Patient", json=p, headers=header)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert store_counts() == before


def test_conditional_update_updates_the_single_match_or_creates(client):
    p = patient()
    ident = p["identifier"][0]["value"]
    url = f"{FHIR}/Patient?identifier=urn:test:mrn|{ident}"
    r1 = client.put(url, json=p)
    assert r1.status_code == 201
    r2 = client.put(url, json={**p, "gender": "female"})
    assert r2.status_code == 200
    assert r2.json()["id"] == r1.json()["id"] and r2.json()["meta"]["versionId"] == "2"


def test_conditional_delete_deletes_the_single_match(client):
    p = patient()
    ident = p["identifier"][0]["value"]
    created = client.post(f"{FHIR}/Patient", json=p).json()
    r = client.delete(f"{FHIR}/Patient?identifier=urn:test:mrn|{ident}")
    assert r.status_code == 204
    assert client.get(f"{FHIR}/Patient/{created['id']}").status_code == 410


def test_prefer_return_minimal_and_operation_outcome(client):
    r = client.post(f"{FHIR}/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and "Location" in r.headers
    r = client.post(
        f"{FHIR}/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("body", "status", "expression"),
    [
        (b"{not json", 400, None),
        (
            b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}',
            400,
            "resourceType",
        ),
        # an unknown element is reported on its parent, as the HL7 validator does
        (b'{"resourceType": "Patient", "foo": 1}', 400, "Patient"),
        (b'{"resourceType": "Patient", "birthDate": "1980-02-30"}', 400, "Patient.birthDate"),
        (b'{"resourceType": "Patient", "gender": "boy"}', 400, "Patient.gender"),
        (
            b'{"resourceType": "Patient", "managingOrganization": {"reference": 5}}',
            400,
            "Patient.managingOrganization.reference",
        ),
        (b"[]", 400, None),
        (b"", 400, None),
    ],
)
def test_bad_input_gets_an_operation_outcome_with_the_path_and_changes_nothing(
    client, store_counts, body, status, expression
):
    before = store_counts()
    r = client.post(f"{FHIR}/Patient", content=body)
    assert r.status_code == status, r.text
    out = r.json()
    assert out["resourceType"] == "OperationOutcome"
    if expression:
        exprs = [e for i in out["issue"] for e in i.get("expression", [])]
        assert any(e == expression or e.startswith(expression) for e in exprs), exprs
    assert store_counts() == before


def test_id_mismatch_between_url_and_body_is_400(client):
    r = client.put(f"{FHIR}/Patient/abc", json=patient(id="xyz"))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]


def test_xml_is_not_acceptable_and_an_unknown_content_type_is_415(client):
    r = client.get(f"{FHIR}/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    r = client.post(
        f"{FHIR}/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}
    )
    assert r.status_code == 415


def test_history_at_type_and_system_level_with_since_and_count(client):
    a = client.post(f"{FHIR}/Patient", json=patient()).json()
    client.put(f"{FHIR}/Patient/{a['id']}", json={**a, "active": True})
    b = client.post(f"{FHIR}/Patient", json=patient()).json()
    hist = client.get(f"{FHIR}/Patient/_history").json()
    assert hist["type"] == "history" and hist["total"] == 3
    first = hist["entry"][0]
    assert first["resource"]["id"] == b["id"]
    page = client.get(f"{FHIR}/_history", params={"_count": 2}).json()
    assert len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    page2 = client.get(nxt.replace("http://testserver", "")).json()
    assert len(page2["entry"]) == 1
    since = hist["entry"][0]["response"]["lastModified"]
    recent = client.get(f"{FHIR}/Patient/_history", params={"_since": since}).json()
    assert recent["total"] >= 1
    assert all(e["response"]["lastModified"] >= since for e in recent["entry"])


def test_capability_statement_lists_every_resource_type_and_interaction(client):
    cs = client.get(f"{FHIR}/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in cs["rest"][0]["resource"]}
    assert {"Patient", "Claim", "Goal", "CarePlan", "ExplanationOfBenefit", "AuditEvent"} <= types
    assert len(types) == 146
    patient_res = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name", "identifier", "birthdate", "gender"} <= {
        p["name"] for p in patient_res["searchParam"]
    }
    assert {i["code"] for i in cs["rest"][0]["interaction"]} == {
        "transaction",
        "batch",
        "search-system",
        "history-system",
    }


def test_a_claim_and_a_goal_can_be_stored_and_read(client):
    goal = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "控制血压"},
        "subject": {"reference": "Patient/x"},
    }
    r = client.post(f"{FHIR}/Goal", json=goal)
    assert r.status_code == 201, r.text
    assert client.get(f"{FHIR}/Goal/{r.json()['id']}").json()["description"]["text"] == "控制血压"


def test_elements_and_summary_count(client):
    p = client.post(f"{FHIR}/Patient", json=patient()).json()
    r = client.get(f"{FHIR}/Patient", params={"_id": p["id"], "_elements": "gender"}).json()
    res = r["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    c = client.get(f"{FHIR}/Patient", params={"_id": p["id"], "_summary": "count"}).json()
    assert c["total"] == 1 and "entry" not in c
