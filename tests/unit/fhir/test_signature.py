"""Bundle.signature JWS verification: canonical content, the signer's certificate, algorithms."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from carenet.fhir.signature import canonical_json, canonical_xhtml, check_bundle_signature
from carenet.fhir.validation import validate_resource

DOCUMENT = "http://hl7.org/fhir/canonicalization/json#document"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(key: Any) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr Test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bundle() -> dict[str, Any]:
    pid = str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "id": "doc-" + pid[:8],
        "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{pid}",
                "resource": {
                    "resourceType": "Patient",
                    "id": pid,
                    "text": {
                        "status": "generated",
                        "div": '<div xmlns="http://www.w3.org/1999/xhtml">&quot;Ann&quot; 李<br/></div>',
                    },
                    "name": [{"family": "Li", "given": ["Ann"]}],
                },
            }
        ],
    }


def sign(
    doc: dict[str, Any],
    key: Any,
    alg: str = "RS256",
    *,
    canon: str = DOCUMENT,
    attach: bytes | None = None,
    x5c: bool = True,
) -> dict[str, Any]:
    """``doc`` with a Bundle.signature signed over its canonical form (detached by default)."""
    header: dict[str, Any] = {"alg": alg, "sigT": "2024-01-01T00:00:00Z", "canon": canon}
    if x5c:
        header["x5c"] = [certificate(key)]
    content = attach if attach is not None else canonical_json(doc, canon)
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(content)}".encode()
    if alg == "RS256":
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256":
        sig = key.sign(
            signing_input, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256()
        )
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    head, _, _ = signing_input.decode().partition(".")
    payload = b64url(attach) if attach is not None else ""
    jws = f"{head}.{payload}.{b64url(sig)}"
    signed = copy.deepcopy(doc)
    signed["signature"] = {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
        "when": "2024-01-01T00:00:00Z",
        "who": {"display": "Dr Test"},
        "sigFormat": "application/jose",
        "data": base64.b64encode(jws.encode()).decode(),
    }
    return signed


def severities(findings: list[Any]) -> list[tuple[str, str]]:
    return [(f.severity, f.text.split(" (", 1)[0]) for f in findings]


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_a_detached_signature_by_the_certified_key_verifies(
    alg: str, rsa_key: Any, ec_key: Any
) -> None:
    signed = sign(bundle(), ec_key if alg == "ES256" else rsa_key, alg)
    assert severities(check_bundle_signature(signed)) == [
        ("information", "The signature verified OK")
    ]
    assert [i for i in validate_resource(signed) if i.severity == "error"] == []


def test_a_document_signature_survives_a_new_bundle_id_and_meta(rsa_key: Any) -> None:
    signed = sign(bundle(), rsa_key)
    signed["id"] = "copied"
    signed["meta"] = {"lastUpdated": "2025-01-01T00:00:00Z"}
    assert severities(check_bundle_signature(signed)) == [
        ("information", "The signature verified OK")
    ]


def test_changed_content_does_not_verify(rsa_key: Any) -> None:
    signed = sign(bundle(), rsa_key, canon="http://hl7.org/fhir/canonicalization/json")
    signed["id"] = "copied"  # part of the signed content under plain json canonicalization
    assert severities(check_bundle_signature(signed)) == [
        ("error", "The signature did not verify against the provided certificate")
    ]
    issues = [i for i in validate_resource(signed) if i.severity == "error"]
    assert [(i.code, i.expression) for i in issues] == [("value", ("Bundle",))]


def test_an_attached_payload_that_is_not_the_bundle_is_reported(rsa_key: Any) -> None:
    doc = bundle()
    other = bundle()
    signed = sign(other, rsa_key, attach=canonical_json(other, DOCUMENT))
    signed["entry"] = doc["entry"]
    found = severities(check_bundle_signature(signed))
    assert found == [
        (
            "warning",
            "The signature has a payload, but the signature should be a detached signature with no payload",
        ),
        ("error", "The signature cannot be valid because the content to sign"),
        ("error", "The signature did not verify against the provided certificate"),
    ]


def test_an_attached_payload_keeps_its_spelling_of_decimals(rsa_key: Any) -> None:
    doc = bundle()
    doc["entry"][0]["resource"] = {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": 1.5},  # read from "1.50": the parsed JSON cannot tell
    }
    payload = canonical_json(doc, DOCUMENT).replace(b'"value":1.5', b'"value":1.50')
    signed = sign(doc, rsa_key, attach=payload)
    assert severities(check_bundle_signature(signed))[1:] == [
        ("information", "The signature verified OK")
    ]


def test_without_a_certificate_the_signature_is_only_a_warning(rsa_key: Any) -> None:
    signed = sign(bundle(), rsa_key, x5c=False)
    assert severities(check_bundle_signature(signed)) == [
        (
            "warning",
            "Didn't find a provided certificate or a 'kid' in the header, so can't verify the signature",
        )
    ]
    assert [i for i in validate_resource(signed) if i.severity == "error"] == []


def test_data_that_is_no_jws_is_an_error() -> None:
    signed = bundle()
    signed["signature"] = {"sigFormat": "application/jose", "data": base64.b64encode(b"x").decode()}
    assert [f.severity for f in check_bundle_signature(signed)] == ["error"]


def test_canonical_json_sorts_properties_and_drops_the_signature_parts() -> None:
    doc = {"resourceType": "Bundle", "id": "x", "meta": {"versionId": "1"}, "type": "collection"}
    assert (
        canonical_json(doc)
        == b'{"id":"x","meta":{"versionId":"1"},"resourceType":"Bundle","type":"collection"}'
    )
    assert canonical_json(doc, DOCUMENT) == b'{"resourceType":"Bundle","type":"collection"}'
    assert canonical_json(doc, "http://hl7.org/fhir/canonicalization/json#static") == (
        b'{"id":"x","resourceType":"Bundle","type":"collection"}'
    )


def test_canonical_xhtml_writes_text_as_the_reference_implementation_does() -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml" class="a&amp;b">&quot;x&quot; &lt; y<br/><a name="n"></a></div>'
    assert canonical_xhtml(div) == (
        '<div xmlns="http://www.w3.org/1999/xhtml" class="a&amp;b">"x" &lt; y<br/><a name="n"></a></div>'
    )
    assert canonical_xhtml("<div>not closed") == "<div>not closed"
