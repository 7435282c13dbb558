"""Batch and transaction Bundles: reference resolution, atomicity and per-entry outcomes."""

from __future__ import annotations

import uuid

FHIR = "/fhir"


def _patient_entry(full_url: str, ident: str) -> dict:
    return {
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test:mrn", "value": ident}],
            "name": [{"text": "李四"}],
        },
        "request": {
            "method": "POST",
            "url": "Patient",
            "ifNoneExist": f"identifier=urn:test:mrn|{ident}",
        },
    }


def _obs_entry(subject: str, value: float = 120) -> dict:
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "subject": {"reference": subject},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        "request": {"method": "POST", "url": "Observation"},
    }


def test_transaction_resolves_urn_uuid_references_to_the_new_ids(client):
    pu = f"urn:uuid:{uuid.uuid4()}"
    ident = uuid.uuid4().hex
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_obs_entry(pu), _patient_entry(pu, ident)],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    obs = out["entry"][0]["resource"]
    pat = out["entry"][1]["resource"]
    assert obs["subject"]["reference"] == f"Patient/{pat['id']}"
    assert (
        client.get(f"{FHIR}/Observation/{obs['id']}").json()["subject"]["reference"]
        == f"Patient/{pat['id']}"
    )


def test_transaction_resolves_conditional_references(client):
    ident = uuid.uuid4().hex
    p = client.post(
        f"{FHIR}/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:test:mrn", "value": ident}],
        },
    ).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_obs_entry(f"Patient?identifier=urn:test:mrn|{ident}")],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{p['id']}"


def test_a_transaction_whose_last_entry_fails_leaves_no_trace_of_the_others(client, store_counts):
    before = store_counts()
    pu = f"urn:uuid:{uuid.uuid4()}"
    bad = _obs_entry(pu)
    bad["resource"]["status"] = "not-a-status"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_patient_entry(pu, uuid.uuid4().hex), _obs_entry(pu), bad],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 400, r.text
    out = r.json()
    assert any("Bundle.entry[2]" in e for i in out["issue"] for e in i.get("expression", [])), out
    assert store_counts() == before


def test_a_transaction_with_a_dangling_urn_uuid_reference_is_refused(client, store_counts):
    before = store_counts()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_obs_entry(f"urn:uuid:{uuid.uuid4()}")],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 400
    assert store_counts() == before


def test_a_transaction_with_duplicate_full_urls_is_refused(client, store_counts):
    before = store_counts()
    pu = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_patient_entry(pu, "a"), _patient_entry(pu, "b")],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 400
    assert store_counts() == before


def test_a_transaction_loaded_twice_with_if_none_exist_creates_nothing_new(client, store_counts):
    pu = f"urn:uuid:{uuid.uuid4()}"
    ident = uuid.uuid4().hex
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [_patient_entry(pu, ident)]}
    first = client.post(FHIR, json=bundle).json()
    before = store_counts()
    second = client.post(FHIR, json=bundle).json()
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert second["entry"][0]["resource"]["id"] == first["entry"][0]["resource"]["id"]
    assert store_counts() == before


def test_transaction_processes_delete_put_and_get(client):
    a = client.post(f"{FHIR}/Patient", json={"resourceType": "Patient", "active": True}).json()
    b = client.post(f"{FHIR}/Patient", json={"resourceType": "Patient", "active": True}).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{b['id']}"}},
            {
                "resource": {**b, "active": False},
                "request": {"method": "PUT", "url": f"Patient/{b['id']}"},
            },
            {"request": {"method": "DELETE", "url": f"Patient/{a['id']}"}},
        ],
    }
    r = client.post(FHIR, json=bundle)
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert e[0]["resource"]["active"] is False  # GET runs after PUT
    assert e[1]["response"]["status"] == "200 OK"
    assert e[2]["response"]["status"] == "204 No Content"
    assert client.get(f"{FHIR}/Patient/{a['id']}").status_code == 410


def test_batch_entries_succeed_or_fail_independently(client):
    good = {
        "resource": {"resourceType": "Patient", "gender": "female"},
        "request": {"method": "POST", "url": "Patient"},
    }
    bad = {
        "resource": {"resourceType": "Patient", "gender": "girl"},
        "request": {"method": "POST", "url": "Patient"},
    }
    missing = {"request": {"method": "GET", "url": f"Patient/{uuid.uuid4()}"}}
    r = client.post(
        FHIR, json={"resourceType": "Bundle", "type": "batch", "entry": [good, bad, missing]}
    )
    assert r.status_code == 200, r.text
    e = r.json()["entry"]
    assert e[0]["response"]["status"] == "201 Created"
    assert e[1]["response"]["status"] == "400"
    assert e[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert e[2]["response"]["status"] == "404"
    created = e[0]["resource"]["id"]
    assert client.get(f"{FHIR}/Patient/{created}").status_code == 200


def test_a_bundle_of_another_type_is_refused_at_the_base(client):
    r = client.post(FHIR, json={"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400
