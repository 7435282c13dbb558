"""Signing stored resources and verifying the Provenance, on both databases (SIG-1, ONL-5).

The Provenance goes through the Repository (validated and indexed like any resource); the key
comes from the keystore; verification reads the exact version the Provenance names.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from carenet.crypto import keystore, service, signing
from carenet.crypto.keys import MasterKey
from carenet.store.engine import build_engine
from carenet.store.repository import Repository
from carenet.store.schema import metadata

DOCTOR = "Practitioner/doc-zhang"
PHARMACIST = "Practitioner/pharm-li"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = build_engine(db_url)
    metadata.create_all(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.from_secret(secrets.token_urlsafe(32))


def a_prescription() -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "urn:oid:1.2.156.0", "code": "X-0001", "display": "硝苯地平"}]
        },
        "subject": {"reference": f"Patient/{uuid.uuid4()}"},
        "dosageInstruction": [{"text": "每日一次，每次 30 mg"}],
    }


@contextmanager
def unit(engine: Engine) -> Iterator[tuple[Connection, Repository]]:
    """One unit of work: like ``store.uow``, flush the repository's buffer, then commit."""
    with engine.begin() as conn:
        repo = Repository(conn, source="urn:test")
        yield conn, repo
        repo.flush()


def codes(findings: list[Any]) -> list[str]:
    return [f.code for f in findings]


def prescribe_and_sign(engine: Engine, master: MasterKey) -> tuple[dict[str, Any], dict[str, Any]]:
    with unit(engine) as (conn, repo):
        stored = repo.create("MedicationRequest", a_prescription())
        provenance = service.sign(
            conn, repo, master, "MedicationRequest", stored["id"], DOCTOR, signer_display="张医生"
        )
    return stored, provenance


def verify(engine: Engine, provenance: dict[str, Any]) -> list[str]:
    with engine.connect() as conn:
        return codes(service.verify(conn, Repository(conn, source="urn:test"), provenance))


def test_a_doctor_signs_a_prescription_and_the_provenance_is_stored_and_found(engine, master):
    stored, provenance = prescribe_and_sign(engine, master)
    assert provenance["id"] and provenance["meta"]["versionId"] == "1"
    assert provenance["target"] == [{"reference": f"MedicationRequest/{stored['id']}/_history/1"}]
    assert provenance["agent"][0]["who"] == {"reference": DOCTOR, "display": "张医生"}
    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "author"
    with engine.connect() as conn:
        repo = Repository(conn, source="urn:test")
        found = repo.search("Provenance", [("target", f"MedicationRequest/{stored['id']}")])
        assert [p["id"] for p in found.matches] == [provenance["id"]]
        assert repo.read("Provenance", provenance["id"]) == provenance
        key = keystore.active_key(conn, DOCTOR)
    assert key is not None
    assert signing.signer_of(provenance) == (DOCTOR, key.key_id)
    assert verify(engine, provenance) == []


def test_the_signature_covers_the_stored_version_exactly(engine, master):
    stored, provenance = prescribe_and_sign(engine, master)
    with engine.connect() as conn:
        key = keystore.active_key(conn, DOCTOR)
    assert key is not None
    assert signing.verify_provenance(provenance, stored, key.public_hex) == []
    changed = {**stored, "meta": {**stored["meta"], "source": "urn:elsewhere"}}
    assert codes(signing.verify_provenance(provenance, changed, key.public_hex)) == ["SIG-INVALID"]


def test_a_new_version_leaves_the_old_signature_valid_but_not_transferable(engine, master):
    stored, provenance = prescribe_and_sign(engine, master)
    with unit(engine) as (conn, repo):
        changed = {**stored, "dosageInstruction": [{"text": "每日两次，每次 30 mg"}]}
        updated, created = repo.update("MedicationRequest", stored["id"], changed)
    assert not created and updated["meta"]["versionId"] == "2"
    # The old Provenance names version 1, which is unchanged.
    assert verify(engine, provenance) == []
    # Pointing the same signature at version 2 does not make version 2 signed.
    moved = {
        **provenance,
        "target": [{"reference": f"MedicationRequest/{stored['id']}/_history/2"}],
    }
    assert verify(engine, moved) == ["SIG-INVALID"]


def test_a_tampered_signature_in_the_store_fails_verification(engine, master):
    _, provenance = prescribe_and_sign(engine, master)
    data = provenance["signature"][0]["data"]
    position = 20  # inside r; not the DER header, not the padding
    swapped = "A" if data[position] != "A" else "B"
    tampered_data = data[:position] + swapped + data[position + 1 :]
    assert base64.b64decode(tampered_data) != base64.b64decode(data)
    with unit(engine) as (conn, repo):
        body = repo.read("Provenance", provenance["id"])
        body["signature"][0]["data"] = tampered_data
        tampered, _ = repo.update("Provenance", provenance["id"], body)
    assert tampered["meta"]["versionId"] == "2"
    assert verify(engine, tampered) == ["SIG-INVALID"]
    # The original version of the Provenance is kept and still verifies.
    with engine.connect() as conn:
        original = Repository(conn, source="urn:test").vread("Provenance", provenance["id"], "1")
    assert verify(engine, original) == []


def test_a_changed_signer_finds_no_key(engine, master):
    _, provenance = prescribe_and_sign(engine, master)
    with engine.begin() as conn:
        keystore.issue_key(conn, master, PHARMACIST)
    forged = dict(provenance)
    forged["signature"] = [{**provenance["signature"][0], "who": {"reference": PHARMACIST}}]
    assert verify(engine, forged) == ["SIG-KEY-UNKNOWN"]


def test_a_missing_target_or_signature_is_a_finding_not_an_exception(engine, master):
    stored, provenance = prescribe_and_sign(engine, master)
    unknown = {
        **provenance,
        "target": [{"reference": f"MedicationRequest/{uuid.uuid4()}/_history/1"}],
    }
    assert verify(engine, unknown) == ["SIG-TARGET-UNKNOWN"]
    unversioned = {**provenance, "target": [{"reference": f"MedicationRequest/{stored['id']}"}]}
    assert verify(engine, unversioned) == ["SIG-TARGET-UNKNOWN"]
    assert verify(engine, {**provenance, "signature": []}) == ["SIG-MISSING"]
    with unit(engine) as (_, repo):
        repo.delete("MedicationRequest", stored["id"])
    # Version 1 stays in the history, so its signature still verifies after a logical delete.
    assert verify(engine, provenance) == []


def test_key_rotation_keeps_old_signatures_valid_and_signs_with_the_new_key(engine, master):
    _, old = prescribe_and_sign(engine, master)
    with engine.begin() as conn:
        rotated = keystore.issue_key(conn, master, DOCTOR)
    _, new = prescribe_and_sign(engine, master)
    old_key = signing.signer_of(old)
    new_key = signing.signer_of(new)
    assert old_key is not None and new_key == (DOCTOR, rotated.key_id)
    assert old_key[1] != rotated.key_id
    with engine.connect() as conn:
        statuses = {k.key_id: k.status for k in keystore.keys_of(conn, DOCTOR)}
    assert statuses == {old_key[1]: "retired", rotated.key_id: "active"}
    assert verify(engine, old) == []
    assert verify(engine, new) == []


def test_the_pharmacist_signs_the_review_as_verifier(engine, master):
    stored, doctors = prescribe_and_sign(engine, master)
    when = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    with unit(engine) as (conn, repo):
        review = service.sign(
            conn,
            repo,
            master,
            "MedicationRequest",
            stored["id"],
            PHARMACIST,
            role="verifier",
            when=when,
        )
    assert review["target"] == doctors["target"]
    assert review["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert review["signature"][0]["type"][0]["code"] == "1.2.840.10065.1.12.1.5"
    assert review["recorded"] == "2024-05-01T02:00:00.000+00:00"
    assert signing.signer_of(review)[0] == PHARMACIST  # type: ignore[index]
    assert signing.signer_of(review) != signing.signer_of(doctors)
    assert verify(engine, review) == []
    assert verify(engine, doctors) == []
    with engine.connect() as conn:
        found = Repository(conn, source="urn:test").search(
            "Provenance", [("target", f"MedicationRequest/{stored['id']}")]
        )
    assert {p["id"] for p in found.matches} == {review["id"], doctors["id"]}
