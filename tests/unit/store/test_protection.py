"""Sealing resident IDs and phone numbers in stored content, blind indexes for search (no I/O)."""

from __future__ import annotations

import logging
import secrets

import orjson
import pytest

from carenet.access.protector import CryptoFieldProtector
from carenet.fhir.identifiers import RESIDENT_ID
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store import indexer
from carenet.store.protection import SEALED_PREFIX, ResourceProtection

ID = "11010519491231002X"
PHONE = "13800138000"


def a_protector() -> CryptoFieldProtector:
    return CryptoFieldProtector.from_secret(secrets.token_urlsafe(32))


@pytest.fixture
def protector() -> CryptoFieldProtector:
    return a_protector()


@pytest.fixture
def protection(protector) -> ResourceProtection:
    return ResourceProtection(protector)


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3"},
        "identifier": [
            {"system": "urn:test:mrn", "value": "MRN-1"},
            {"system": RESIDENT_ID, "value": ID},
        ],
        "telecom": [
            {"system": "phone", "value": PHONE},
            {"system": "email", "value": "wang@example.org"},
        ],
        "contact": [{"telecom": [{"system": "sms", "value": "13900001111"}]}],
    }


def compact(resource: dict) -> str:
    return orjson.dumps(resource).decode()


def test_sealed_content_holds_no_plaintext_and_reveals_to_the_exact_resource(protection):
    sealed = protection.seal(compact(patient()))
    for secret in (ID, "1101", PHONE, "13900001111"):
        assert secret not in sealed
    assert sealed.count(SEALED_PREFIX) == 3
    assert "MRN-1" in sealed and "wang@example.org" in sealed
    assert protection.reveal(sealed) == patient()
    assert protection.reveal(sealed.encode()) == patient()


def test_the_sealed_element_keeps_its_place_and_system(protection):
    stored = orjson.loads(protection.seal(compact(patient())))
    assert stored["identifier"][1]["system"] == RESIDENT_ID
    assert stored["identifier"][1]["value"].startswith(SEALED_PREFIX)
    assert stored["telecom"][0] == {"system": "phone", "value": stored["telecom"][0]["value"]}
    assert stored["identifier"][0] == {"system": "urn:test:mrn", "value": "MRN-1"}


def test_content_without_sensitive_values_is_stored_as_it_is(protection):
    text = compact({"resourceType": "Observation", "id": "o", "status": "final"})
    assert protection.seal(text) is text


def test_equal_values_seal_to_different_tokens(protection):
    a = orjson.loads(protection.seal(compact(patient())))
    b = orjson.loads(protection.seal(compact(patient())))
    assert a["identifier"][1]["value"] != b["identifier"][1]["value"]


def test_a_client_value_that_looks_sealed_is_sealed_too_and_comes_back_unchanged(protection):
    odd = {"resourceType": "Patient", "identifier": [{"system": RESIDENT_ID, "value": "sm4gcm:x"}]}
    assert protection.reveal(protection.seal(compact(odd))) == odd


def test_plaintext_written_before_protection_is_read_as_it_is(protection):
    assert protection.reveal(compact(patient())) == patient()


def _tampered(protection: ResourceProtection) -> str:
    stored = orjson.loads(protection.seal(compact(patient())))
    token = stored["identifier"][1]["value"]
    stored["identifier"][1]["value"] = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    return compact(stored)


def test_a_tampered_token_is_a_500_with_an_incident_and_the_log_names_no_value(protection, caplog):
    with caplog.at_level(logging.ERROR, logger="carenet.store.protection"):
        with pytest.raises(OperationOutcomeError) as err:
            protection.reveal(_tampered(protection))
    assert err.value.status == 500
    [issue] = err.value.issues
    assert (issue.severity, issue.code) == ("fatal", "exception")
    incident = issue.diagnostics.removeprefix("Internal error; incident ")
    assert len(incident) == 32
    [record] = caplog.records
    message = record.getMessage()
    assert message == (
        f"stored sensitive value cannot be decrypted: incident={incident} resource=Patient/p1 "
        "version=3 element=identifier[1].value code=CRYPTO-TOKEN-INVALID"
    )


def test_a_token_moved_to_another_kind_of_element_does_not_open(protection):
    stored = orjson.loads(protection.seal(compact(patient())))
    stored["identifier"][1]["value"] = stored["telecom"][0]["value"]
    with pytest.raises(OperationOutcomeError) as err:
        protection.reveal(compact(stored))
    assert err.value.status == 500


def test_content_sealed_under_another_master_secret_does_not_open(protection, caplog):
    sealed = ResourceProtection(a_protector()).seal(compact(patient()))
    with pytest.raises(OperationOutcomeError):
        protection.reveal(sealed)
    assert "code=CRYPTO-MASTER-KEY-MISMATCH" in caplog.records[-1].getMessage()


def test_index_rows_carry_the_blind_index_the_identity_tables_use(protection, protector):
    rows = indexer.rows_for(patient(), blind=protection.index_code)
    token = {(r["param"], r["system"], r["code"]) for r in rows["idx_token"]}
    rid_blind = protector.blind_index(ID, field="resident_id")
    phone_blind = protector.blind_index(PHONE, field="phone")
    assert ("identifier", RESIDENT_ID, rid_blind) in token
    assert ("identifier", "urn:test:mrn", "MRN-1") in token
    assert ("phone", "phone", phone_blind) in token
    assert ("telecom", "phone", phone_blind) in token
    assert ("email", "email", "wang@example.org") in token
    every_value = repr(rows)
    for secret in (ID, PHONE, "13900001111"):
        assert secret not in every_value


def test_search_codes_are_the_blind_indexes_of_the_value_for_its_kind(protection, protector):
    rid = protector.blind_index(ID, field="resident_id")
    phone = protector.blind_index(PHONE, field="phone")
    assert protection.search_codes(RESIDENT_ID, ID, frozenset()) == [rid]
    assert protection.search_codes("phone", PHONE, frozenset()) == [phone]
    assert protection.search_codes("sms", PHONE, frozenset()) == [phone]
    assert protection.search_codes("urn:test:mrn", ID, frozenset({"resident_id"})) == []
    assert protection.search_codes(None, ID, frozenset({"resident_id"})) == [rid]
    assert protection.search_codes(None, PHONE, frozenset({"phone", "resident_id"})) == [
        phone,
        protector.blind_index(PHONE, field="resident_id"),
    ]
    assert protection.search_codes(None, ID, frozenset()) == []


def test_blind_indexes_match_the_normalised_value(protection, protector):
    assert protection.search_codes(RESIDENT_ID, ID.lower(), frozenset()) == [
        protector.blind_index(ID, field="resident_id")
    ]
    assert protection.search_codes("phone", "+86 138-0013-8000", frozenset()) == [
        protector.blind_index(PHONE, field="phone")
    ]


def test_a_phone_search_without_digits_has_no_blind_alternative(protection):
    assert protection.search_codes("phone", "unknown", frozenset()) == []
    assert protection.search_codes(None, "wang@example.org", frozenset({"phone"})) == []


def test_a_snapshot_query_is_sealed_and_opens_again(protection):
    query = orjson.dumps([["identifier", f"{RESIDENT_ID}|{ID}"]]).decode()
    sealed = protection.seal_text(query)
    assert ID not in sealed and sealed.startswith(SEALED_PREFIX)
    assert protection.open_text(sealed) == query
    assert protection.open_text(query) == query  # stored before protection
    assert protection.open_text(SEALED_PREFIX + "garbage") is None
    assert ResourceProtection(a_protector()).open_text(sealed) is None


def test_has_plaintext_tells_content_written_before_protection(protection):
    assert protection.has_plaintext(compact(patient()))
    assert protection.has_plaintext(compact(patient()).encode())
    assert not protection.has_plaintext(protection.seal(compact(patient())))
    assert not protection.has_plaintext(compact({"resourceType": "Observation"}))
