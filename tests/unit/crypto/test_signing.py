"""Provenance signatures (SIG-1): built over the exact version, and every change is detected."""

from __future__ import annotations

import base64
import copy
import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from carenet.crypto import sm2
from carenet.crypto.errors import CryptoError
from carenet.crypto.keys import MasterKey
from carenet.crypto.signing import (
    KEY_ID_EXTENSION,
    SigningKey,
    build_provenance,
    canonical_json,
    issue_signing_key,
    key_id_of,
    sign_with_wrapped,
    signer_of,
    verify_provenance,
)
from carenet.fhir.validation import validate_resource

SHANGHAI = timezone(timedelta(hours=8))
WHEN = datetime(2024, 5, 1, 9, 30, 0, tzinfo=SHANGHAI)


def a_prescription() -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": str(uuid.uuid4()),
        "meta": {
            "versionId": "2",
            "lastUpdated": "2024-05-01T01:29:59.123Z",
            "source": "urn:carenet:node:" + secrets.token_hex(4),
        },
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "urn:oid:1.2.156.0", "code": "X-0001", "display": "硝苯地平"}]
        },
        "subject": {"reference": f"Patient/{uuid.uuid4()}"},
        "dosageInstruction": [{"text": "每日一次，每次 30 mg"}],
    }


@pytest.fixture(scope="module")
def master() -> MasterKey:
    return MasterKey.from_secret(secrets.token_urlsafe(32))


@pytest.fixture(scope="module")
def doctor() -> str:
    return f"Practitioner/{uuid.uuid4()}"


@pytest.fixture(scope="module")
def key(master: MasterKey, doctor: str) -> SigningKey:
    return issue_signing_key(master, doctor)


@pytest.fixture(scope="module")
def signed(master: MasterKey, doctor: str, key: SigningKey) -> tuple[dict, dict]:
    resource = a_prescription()
    provenance = sign_with_wrapped(
        resource,
        master=master,
        wrapped_private_key=key.wrapped_private_key,
        signer_reference=doctor,
        signer_display="张医生",
        key_id=key.key_id,
        when=WHEN,
    )
    return resource, provenance


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert canonical_json({"b": 1, "a": {"d": [1, 2.5], "c": "é"}}) == (
        '{"a":{"c":"é","d":[1,2.5]},"b":1}'.encode()
    )


def test_canonical_json_refuses_an_integer_beyond_ieee_double():
    with pytest.raises(CryptoError) as err:
        canonical_json({"value": 2**60})
    assert err.value.code == "SIG-CANONICALIZATION"


def test_a_signed_resource_verifies_with_the_signers_key(signed, key):
    resource, provenance = signed
    assert verify_provenance(provenance, resource, key.public_hex) == []


def test_the_provenance_targets_the_exact_version_and_names_the_signer(signed, doctor, key):
    resource, provenance = signed
    signature = provenance["signature"][0]
    assert provenance["target"] == [{"reference": f"MedicationRequest/{resource['id']}/_history/2"}]
    assert provenance["recorded"] == "2024-05-01T09:30:00.000+08:00"
    assert provenance["agent"] == [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                        "code": "author",
                        "display": "Author",
                    }
                ]
            },
            "who": {"reference": doctor, "display": "张医生"},
        }
    ]
    assert signature["type"] == [
        {
            "system": "urn:iso-astm:E1762-95:2013",
            "code": "1.2.840.10065.1.12.1.1",
            "display": "Author's Signature",
        }
    ]
    assert signature["extension"] == [{"url": KEY_ID_EXTENSION, "valueString": key.key_id}]
    assert signature["sigFormat"] == "application/sm2-signature"
    assert signature["targetFormat"] == "application/fhir+json"
    assert signature["when"] == provenance["recorded"]
    assert signer_of(provenance) == (doctor, key.key_id)


def test_the_signature_data_is_sm2_over_the_canonical_resource_meta_included(signed, key):
    resource, provenance = signed
    raw = base64.b64decode(provenance["signature"][0]["data"])
    assert sm2.verify(key.public_hex, canonical_json(resource), raw)
    without_meta = {k: v for k, v in resource.items() if k != "meta"}
    assert not sm2.verify(key.public_hex, canonical_json(without_meta), raw)


def test_the_provenance_is_a_valid_r4_resource(signed):
    _, provenance = signed
    assert [i for i in validate_resource(provenance) if i.severity == "error"] == []


def test_reordering_keys_does_not_break_the_signature(signed, key):
    resource, provenance = signed
    reordered = dict(reversed(list(resource.items())))
    assert verify_provenance(provenance, reordered, key.public_hex) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r["medicationCodeableConcept"]["coding"][0].update(code="X-0002"),
        lambda r: r["dosageInstruction"][0].update(text="每日两次，每次 30 mg"),
        lambda r: r.update(status="cancelled"),
        lambda r: r["meta"].update(lastUpdated="2024-05-01T01:30:00.123Z"),
        lambda r: r["meta"].update(source="urn:carenet:node:other"),
        lambda r: r.update(note=[{"text": "added"}]),
        lambda r: r.pop("dosageInstruction"),
    ],
    ids=["code", "dosage", "status", "lastUpdated", "source", "added-element", "removed-element"],
)
def test_any_change_to_the_resource_is_detected(signed, key, change):
    resource, provenance = signed
    changed = copy.deepcopy(resource)
    change(changed)
    findings = verify_provenance(provenance, changed, key.public_hex)
    assert codes(findings) == ["SIG-INVALID"]
    assert findings[0].expression == "Provenance.signature[0].data"
    assert findings[0].severity == "error"


def test_a_different_version_of_the_resource_is_a_target_mismatch(signed, key):
    resource, provenance = signed
    next_version = copy.deepcopy(resource)
    next_version["meta"]["versionId"] = "3"
    findings = verify_provenance(provenance, next_version, key.public_hex)
    assert codes(findings) == ["SIG-MISMATCH-TARGET", "SIG-INVALID"]
    assert findings[0].expression == "Provenance.target"


def test_a_provenance_retargeted_at_another_version_is_a_target_mismatch(signed, key):
    resource, provenance = signed
    moved = copy.deepcopy(provenance)
    moved["target"][0]["reference"] = f"MedicationRequest/{resource['id']}/_history/1"
    assert codes(verify_provenance(moved, resource, key.public_hex)) == ["SIG-MISMATCH-TARGET"]


def test_a_provenance_without_a_version_in_its_target_is_a_target_mismatch(signed, key):
    resource, provenance = signed
    moved = copy.deepcopy(provenance)
    moved["target"][0]["reference"] = f"MedicationRequest/{resource['id']}"
    assert codes(verify_provenance(moved, resource, key.public_hex)) == ["SIG-MISMATCH-TARGET"]


def test_a_changed_signature_is_detected(signed, key):
    resource, provenance = signed
    raw = bytearray(base64.b64decode(provenance["signature"][0]["data"]))
    raw[-1] ^= 0x01
    tampered = copy.deepcopy(provenance)
    tampered["signature"][0]["data"] = base64.b64encode(bytes(raw)).decode()
    assert codes(verify_provenance(tampered, resource, key.public_hex)) == ["SIG-INVALID"]


def test_a_signature_of_another_resource_pasted_in_is_detected(master, doctor, key, signed):
    resource, provenance = signed
    other = sign_with_wrapped(
        a_prescription(),
        master=master,
        wrapped_private_key=key.wrapped_private_key,
        signer_reference=doctor,
        signer_display=None,
        key_id=key.key_id,
        when=WHEN,
    )
    pasted = copy.deepcopy(provenance)
    pasted["signature"][0]["data"] = other["signature"][0]["data"]
    assert codes(verify_provenance(pasted, resource, key.public_hex)) == ["SIG-INVALID"]


@pytest.mark.parametrize("data", ["", "not base64!", "QUJD=", "QUJD\n", 42, None])
def test_signature_data_that_is_not_strict_base64_is_malformed(signed, key, data):
    resource, provenance = signed
    tampered = copy.deepcopy(provenance)
    tampered["signature"][0]["data"] = data
    assert codes(verify_provenance(tampered, resource, key.public_hex)) == ["SIG-MALFORMED"]


def test_another_key_does_not_verify_the_signature(signed):
    resource, provenance = signed
    assert codes(verify_provenance(provenance, resource, sm2.generate_keypair()[1])) == [
        "SIG-INVALID"
    ]


def test_a_public_key_that_is_not_an_sm2_point_is_reported(signed):
    resource, provenance = signed
    findings = verify_provenance(provenance, resource, "04" + "11" * 64)
    assert codes(findings) == ["SIG-KEY-INVALID"]


def test_a_provenance_without_an_sm2_signature_is_reported(signed, key):
    resource, provenance = signed
    unsigned = copy.deepcopy(provenance)
    unsigned["signature"][0]["sigFormat"] = "application/jose"
    findings = verify_provenance(unsigned, resource, key.public_hex)
    assert codes(findings) == ["SIG-MISSING"]
    assert signer_of(unsigned) is None


def test_a_pharmacist_review_is_a_verifier_signature(master, key, doctor):
    provenance = sign_with_wrapped(
        a_prescription(),
        master=master,
        wrapped_private_key=key.wrapped_private_key,
        signer_reference=doctor,
        signer_display=None,
        key_id=key.key_id,
        when=WHEN,
        role="verifier",
    )
    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert provenance["signature"][0]["type"][0]["code"] == "1.2.840.10065.1.12.1.5"
    assert "display" not in provenance["signature"][0]["who"]


def test_a_wrapped_key_does_not_sign_for_another_signer(master, key):
    with pytest.raises(CryptoError) as err:
        sign_with_wrapped(
            a_prescription(),
            master=master,
            wrapped_private_key=key.wrapped_private_key,
            signer_reference=f"Practitioner/{uuid.uuid4()}",
            signer_display=None,
            key_id=key.key_id,
            when=WHEN,
        )
    assert err.value.code == "CRYPTO-TOKEN-INVALID"


def test_a_wrapped_key_does_not_sign_under_another_master_secret(key, doctor):
    with pytest.raises(CryptoError) as err:
        sign_with_wrapped(
            a_prescription(),
            master=MasterKey.from_secret(secrets.token_urlsafe(32)),
            wrapped_private_key=key.wrapped_private_key,
            signer_reference=doctor,
            signer_display=None,
            key_id=key.key_id,
            when=WHEN,
        )
    assert err.value.code == "CRYPTO-MASTER-KEY-MISMATCH"


def test_an_issued_key_id_names_its_public_key(key):
    assert key.key_id == key_id_of(key.public_hex)
    assert key.key_id.startswith("sm2-") and len(key.key_id) == 4 + 32


def test_an_unversioned_resource_is_not_signed():
    private_hex, public_hex = sm2.generate_keypair()
    resource = a_prescription()
    del resource["meta"]["versionId"]
    with pytest.raises(CryptoError) as err:
        build_provenance(
            resource,
            signer_reference="Practitioner/1",
            signer_display=None,
            private_hex=private_hex,
            public_hex=public_hex,
            when=WHEN,
            key_id=key_id_of(public_hex),
        )
    assert err.value.code == "SIG-UNVERSIONED"


def test_a_naive_signing_time_is_refused():
    private_hex, public_hex = sm2.generate_keypair()
    with pytest.raises(CryptoError) as err:
        build_provenance(
            a_prescription(),
            signer_reference="Practitioner/1",
            signer_display=None,
            private_hex=private_hex,
            public_hex=public_hex,
            when=datetime(2024, 5, 1, 9, 30),
            key_id="k",
        )
    assert err.value.code == "SIG-TIME-NAIVE"


def test_a_utc_signing_time_is_recorded_as_utc():
    private_hex, public_hex = sm2.generate_keypair()
    provenance = build_provenance(
        a_prescription(),
        signer_reference="Practitioner/1",
        signer_display=None,
        private_hex=private_hex,
        public_hex=public_hex,
        when=datetime(2024, 5, 1, 1, 30, tzinfo=UTC),
        key_id="k",
    )
    assert provenance["recorded"] == "2024-05-01T01:30:00.000+00:00"
