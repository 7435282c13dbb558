"""Resident IDs and phone numbers are sealed at rest and blind-indexed (PRIV-1), while every
FHIR interaction still takes and returns them whole; the audit chain sees them masked."""

from __future__ import annotations

import json
import logging
import random
import uuid
from datetime import date

import pytest
from sqlalchemy import select, text, update

from carenet.bootstrap import build_store
from carenet.crypto.fields import mask_resident_id
from carenet.fhir.identifiers import RESIDENT_ID, make_resident_id
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.protection import SEALED_PREFIX
from carenet.store.schema import metadata, resources

FHIR = "/fhir"


def a_resident_id() -> str:
    birth = date(1950, 1, 1).toordinal() + random.randrange(20_000)
    return make_resident_id("330122", date.fromordinal(birth), random.randrange(1000))


def a_phone() -> str:
    return "13" + "".join(random.choice("0123456789") for _ in range(9))


def a_patient(rid: str, phone: str, *, contact_phone: str | None = None) -> dict:
    resource = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:test:mrn", "value": uuid.uuid4().hex},
            {"use": "official", "system": RESIDENT_ID, "value": rid},
        ],
        "name": [{"family": "王", "given": ["小明"]}],
        "telecom": [
            {"system": "phone", "value": phone, "use": "mobile"},
            {"system": "email", "value": "wang@example.org"},
        ],
        "gender": "male",
    }
    if contact_phone:
        resource["contact"] = [{"telecom": [{"system": "phone", "value": contact_phone}]}]
    return resource


def without_meta(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def database_text(settings) -> str:  # noqa: ANN001
    """Every row of every table, as text: what someone with a copy of the database sees."""
    store = build_store(settings)
    try:
        with store.engine.connect() as conn:
            return "\n".join(
                repr(tuple(row)) for t in metadata.sorted_tables for row in conn.execute(select(t))
            )
    finally:
        store.engine.dispose()


def raw(settings, sql: str, **params: object) -> list[tuple]:  # noqa: ANN001
    store = build_store(settings)
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        store.engine.dispose()


def ids(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if "search" in e]


def test_the_database_holds_no_plaintext_while_every_read_returns_it_whole(client, settings):
    rid, phone, other = a_resident_id(), a_phone(), a_phone()
    sent = a_patient(rid, phone, contact_phone=other)
    created = client.post(f"{FHIR}/Patient", json=sent).json()
    pid = created["id"]
    changed = {**created, "telecom": [{"system": "sms", "value": other}, sent["telecom"][1]]}
    assert client.put(f"{FHIR}/Patient/{pid}", json=changed).status_code == 200

    assert without_meta(created) == sent
    assert client.get(f"{FHIR}/Patient/{pid}/_history/1").json() == created
    assert client.get(f"{FHIR}/Patient/{pid}").json()["telecom"] == changed["telecom"]
    history = client.get(f"{FHIR}/Patient/{pid}/_history").json()
    assert [e["resource"] for e in history["entry"]][1] == created
    assert (
        client.get(f"{FHIR}/Patient", params={"_id": pid}).json()["entry"][0]["resource"][
            "identifier"
        ]
        == sent["identifier"]
    )

    for table in ("resources", "resource_history"):
        for (content,) in raw(settings, f"SELECT content FROM {table} WHERE res_id = :i", i=pid):
            assert rid not in content and phone not in content and other not in content
            assert SEALED_PREFIX in content
            assert "wang@example.org" in content  # only the sensitive elements are sealed
    tokens = raw(
        settings,
        "SELECT param, system, code FROM idx_token WHERE res_id = :i AND system IN "
        "(:rid, 'phone', 'sms') ORDER BY param, system",
        i=pid,
        rid=RESIDENT_ID,
    )
    assert [(p, s) for p, s, _ in tokens] == [
        ("identifier", RESIDENT_ID),
        ("telecom", "sms"),
    ]
    assert all(len(code) == 64 for _, _, code in tokens)  # HMAC-SM3, hex
    everything = database_text(settings)
    assert rid not in everything and phone not in everything and other not in everything


def test_search_by_resident_id_finds_the_patient_with_and_without_the_system(client):
    rid, phone = a_resident_id(), a_phone()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(rid, phone)).json()["id"]
    client.post(f"{FHIR}/Patient", json=a_patient(a_resident_id(), a_phone()))
    for value in (f"{RESIDENT_ID}|{rid}", rid, f"{RESIDENT_ID}|{rid[:-1]}{rid[-1].lower()}"):
        found = client.get(f"{FHIR}/Patient", params={"identifier": value}).json()
        assert ids(found) == [pid], value
        assert found["entry"][0]["resource"]["identifier"][1]["value"] == rid
    not_found = client.get(f"{FHIR}/Patient", params={"identifier:not": f"{RESIDENT_ID}|{rid}"})
    assert pid not in ids(not_found.json())


def test_search_by_phone_and_telecom_finds_the_patient(client):
    rid, phone = a_resident_id(), a_phone()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(rid, phone)).json()["id"]
    spaced = f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}"
    for name, value in [
        ("phone", phone),
        ("phone", spaced),
        ("telecom", f"phone|{phone}"),
        ("telecom", phone),
        ("email", "wang@example.org"),
    ]:
        found = client.get(f"{FHIR}/Patient", params={name: value, "_count": "1000"}).json()
        assert pid in ids(found), (name, value)
    assert client.get(f"{FHIR}/Patient", params={"telecom": f"sms|{phone}"}).json()["total"] == 0


def test_related_persons_and_practitioners_are_protected_and_found_alike(client, settings):
    rid, phone = a_resident_id(), a_phone()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(a_resident_id(), a_phone())).json()["id"]
    guardian = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{pid}"},
        "identifier": [{"system": RESIDENT_ID, "value": rid}],
        "telecom": [{"system": "phone", "value": phone}],
    }
    gid = client.post(f"{FHIR}/RelatedPerson", json=guardian).json()["id"]
    doctor = {"resourceType": "Practitioner", "telecom": [{"system": "phone", "value": phone}]}
    did = client.post(f"{FHIR}/Practitioner", json=doctor).json()["id"]
    assert ids(client.get(f"{FHIR}/RelatedPerson", params={"identifier": rid}).json()) == [gid]
    assert ids(client.get(f"{FHIR}/RelatedPerson", params={"phone": phone}).json()) == [gid]
    assert ids(client.get(f"{FHIR}/Practitioner", params={"phone": phone}).json()) == [did]
    revinclude = client.get(
        f"{FHIR}/Patient", params={"_id": pid, "_revinclude": "RelatedPerson:patient"}
    ).json()
    included = [e["resource"] for e in revinclude["entry"] if e["search"]["mode"] == "include"]
    assert [r["identifier"][0]["value"] for r in included] == [rid]
    everything = database_text(settings)
    assert rid not in everything and phone not in everything


def test_chains_and_reference_identifiers_find_by_resident_id(client):
    rid = a_resident_id()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(rid, a_phone())).json()["id"]
    by_reference = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "bp"},
        "subject": {"reference": f"Patient/{pid}"},
    }
    by_identifier = {
        **by_reference,
        "subject": {"identifier": {"system": RESIDENT_ID, "value": rid}},
    }
    o1 = client.post(f"{FHIR}/Observation", json=by_reference).json()["id"]
    o2 = client.post(f"{FHIR}/Observation", json=by_identifier).json()["id"]
    chained = client.get(f"{FHIR}/Observation", params={"subject:Patient.identifier": rid})
    assert ids(chained.json()) == [o1]
    with_include = client.get(
        f"{FHIR}/Observation",
        params={"subject:Patient.identifier": rid, "_include": "Observation:subject"},
    ).json()
    included = [e["resource"] for e in with_include["entry"] if e["search"]["mode"] == "include"]
    assert [r["identifier"][1]["value"] for r in included] == [rid]
    by_ident = client.get(
        f"{FHIR}/Observation", params={"subject:identifier": f"{RESIDENT_ID}|{rid}"}
    ).json()
    assert ids(by_ident) == [o2]
    assert by_ident["entry"][0]["resource"]["subject"]["identifier"]["value"] == rid


def test_a_partial_value_matches_nothing_and_contains_is_refused_even_when_lenient(
    client, store_counts
):
    rid, phone = a_resident_id(), a_phone()
    client.post(f"{FHIR}/Patient", json=a_patient(rid, phone))
    partial = client.get(f"{FHIR}/Patient", params={"identifier": f"{RESIDENT_ID}|{rid[:6]}"})
    assert partial.json()["total"] == 0
    assert client.get(f"{FHIR}/Patient", params={"phone": phone[:7]}).json()["total"] == 0
    before = store_counts()
    for name, value in [("identifier:contains", rid[6:14]), ("phone:contains", phone[-4:])]:
        r = client.get(f"{FHIR}/Patient", params={name: value})
        assert r.status_code == 400, r.text
        code = name.split(":")[0]
        assert r.json()["issue"] == [
            {
                "severity": "error",
                "code": "not-supported",
                "diagnostics": f"{code}:contains is not supported: resident ID numbers and phone "
                "numbers are stored encrypted and found by a keyed hash of the whole value, so "
                f"only an exact match ({code}=[system|]value) is possible",
                "expression": [name],
            }
        ]
        assert value not in r.text
    assert store_counts() == before


def test_paging_through_a_phone_search_keeps_the_snapshot_query_sealed(client, settings):
    phone = a_phone()
    created = {
        client.post(f"{FHIR}/Patient", json=a_patient(a_resident_id(), phone)).json()["id"]
        for _ in range(3)
    }
    first = client.get(f"{FHIR}/Patient", params={"phone": phone, "_count": "2"}).json()
    assert first["total"] == 3
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(nxt.removeprefix("http://testserver")).json()
    assert set(ids(first)) | set(ids(second)) == created
    assert all(e["resource"]["telecom"][0]["value"] == phone for e in second["entry"])
    [(query,)] = raw(settings, "SELECT query FROM search_snapshot_meta")
    assert query.startswith(SEALED_PREFIX) and phone not in query


def test_transactions_patches_and_conditional_writes_seal_and_answer_in_plaintext(client, settings):
    rid, phone, new_phone = a_resident_id(), a_phone(), a_phone()
    full_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url,
                "resource": a_patient(rid, phone),
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={RESIDENT_ID}|{rid}",
                },
            }
        ],
    }
    out = client.post(FHIR, json=bundle).json()
    patient = out["entry"][0]["resource"]
    assert patient["identifier"][1]["value"] == rid
    again = client.post(FHIR, json=bundle).json()
    assert again["entry"][0]["response"]["status"] == "200 OK"  # found by its blind index
    patched = client.patch(
        f"{FHIR}/Patient/{patient['id']}",
        json=[{"op": "replace", "path": "/telecom/0/value", "value": new_phone}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["telecom"][0]["value"] == new_phone
    conditional = client.put(
        f"{FHIR}/Patient",
        params={"identifier": f"{RESIDENT_ID}|{rid}"},
        json={**without_meta(patched.json()), "gender": "other"},
    )
    assert conditional.status_code == 200, conditional.text
    assert conditional.json()["id"] == patient["id"]
    assert conditional.json()["meta"]["versionId"] == "3"
    assert ids(client.get(f"{FHIR}/Patient", params={"phone": new_phone}).json()) == [patient["id"]]
    assert client.get(f"{FHIR}/Patient", params={"phone": phone}).json()["total"] == 0
    everything = database_text(settings)
    for secret in (rid, phone, new_phone):
        assert secret not in everything


def test_the_audit_chain_records_search_queries_with_the_values_masked(client, settings, audit_log):
    rid, phone = a_resident_id(), a_phone()
    client.post(f"{FHIR}/Patient", json=a_patient(rid, phone))
    client.get(f"{FHIR}/Patient", params={"identifier": f"{RESIDENT_ID}|{rid}"})
    client.get(f"{FHIR}/Patient", params={"telecom": f"phone|{phone}"})
    client.get(f"{FHIR}/Patient", params={"phone:contains": phone})  # refused, audited too
    queries = [e["query"] for e in audit_log() if e["query"]]
    masked_phone = phone[:3] + "****" + phone[-4:]
    assert queries == [
        f"identifier=urn%3Aoid%3A2.16.156.10011.1.3%7C{mask_resident_id(rid)}".replace("*", "%2A"),
        f"telecom=phone%7C{masked_phone}".replace("*", "%2A"),
        f"phone%3Acontains={masked_phone}".replace("*", "%2A"),
    ]
    everything = database_text(settings)
    assert rid not in everything and phone not in everything


def test_a_tampered_token_gives_a_500_with_an_opaque_incident_and_is_audited(
    client, settings, audit_log, caplog
):
    rid, phone = a_resident_id(), a_phone()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(rid, phone)).json()["id"]
    [(content,)] = raw(settings, "SELECT content FROM resources WHERE res_id = :i", i=pid)
    stored = json.loads(content)
    token = stored["identifier"][1]["value"]
    stored["identifier"][1]["value"] = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    store = build_store(settings)
    try:
        with store.engine.begin() as conn:
            conn.execute(
                update(resources)
                .where(resources.c.res_id == pid)
                .values(content=json.dumps(stored))
            )
    finally:
        store.engine.dispose()
    with caplog.at_level(logging.ERROR, logger="carenet.store.protection"):
        r = client.get(f"{FHIR}/Patient/{pid}")
        searched = client.get(f"{FHIR}/Patient", params={"_id": pid})
    assert r.status_code == 500 and searched.status_code == 500
    [issue] = r.json()["issue"]
    assert issue["severity"] == "fatal" and issue["code"] == "exception"
    assert issue["diagnostics"].startswith("Internal error; incident ")
    assert rid not in r.text and token not in r.text
    messages = [rec.getMessage() for rec in caplog.records]
    assert len(messages) == 2
    assert f"resource=Patient/{pid} version=1 element=identifier[1].value" in messages[0]
    assert issue["diagnostics"].removeprefix("Internal error; incident ") in messages[0]
    assert all(rid not in m and token not in m for m in messages)
    assert [(e["subtype"], e["outcome"]) for e in audit_log()[-2:]] == [
        ("read", 8),
        ("search", 8),
    ]
    # The version history was not touched, so it still opens.
    assert client.get(f"{FHIR}/Patient/{pid}/_history/1").json()["identifier"][1]["value"] == rid


def test_a_node_with_another_master_secret_can_neither_open_nor_find_the_values(client, settings):
    rid = a_resident_id()
    pid = client.post(f"{FHIR}/Patient", json=a_patient(rid, a_phone())).json()["id"]
    other = settings.model_copy(
        update={"master_secret": "another-master-secret-for-the-same-database-0123456789"}
    )
    store = build_store(other)
    try:
        with store.unit_of_work() as uow:
            with pytest.raises(OperationOutcomeError) as err:
                uow.repo.read("Patient", pid)
            assert err.value.status == 500
            # Its blind index differs too, so the patient is not found either.
            assert uow.repo.find("Patient", f"identifier={RESIDENT_ID}|{rid}") == []
    finally:
        store.engine.dispose()
