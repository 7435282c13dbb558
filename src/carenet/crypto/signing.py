"""Signing FHIR resources: a Provenance whose SM2 signature covers one exact resource version.

SIG-1 (RULES.md, 电子签名法 Art 13-14): the signing key is controlled only by the signer (it
exists unwrapped only inside :func:`sign_with_wrapped`) and any later change to the signed data
or the signature is detectable (:func:`verify_provenance`). ONL-5: the doctor's e-signature on
an online prescription, and the pharmacist's on its review, are made here and nowhere else.
SIG-2: SM2 with SM3. No I/O: callers store the Provenance and the wrapped key.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import rfc8785

from carenet.crypto import sm2
from carenet.crypto.errors import CryptoError
from carenet.crypto.hashing import sm3
from carenet.crypto.keys import MasterKey
from carenet.fhir.findings import Finding

SIG_FORMAT = "application/sm2-signature"  # CareNet's own: IANA has no media type for SM2
TARGET_FORMAT = "application/fhir+json"
KEY_ID_EXTENSION = "https://carenet.example.org/fhir/StructureDefinition/signature-key-id"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
Role = Literal["author", "verifier"]
# Provenance.agent.type and Signature.type for each role (ASTM E1762-95 signature types).
_ROLES: dict[str, tuple[str, str, str]] = {
    "author": ("Author", "1.2.840.10065.1.12.1.1", "Author's Signature"),
    "verifier": ("Verifier", "1.2.840.10065.1.12.1.5", "Verification Signature"),
}
_PRIVATE_BYTES = 32
_PUBLIC_BYTES = 65
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """What is stored for one signer's key: its id, public key, and the private key wrapped."""

    key_id: str
    public_hex: str
    wrapped_private_key: bytes


def canonical_json(resource: dict[str, Any]) -> bytes:
    """The RFC 8785 (JCS) canonical UTF-8 bytes of ``resource``: the bytes a signature covers."""
    try:
        return rfc8785.dumps(resource)
    except rfc8785.CanonicalizationError as exc:
        raise CryptoError("SIG-CANONICALIZATION", f"not canonicalizable JSON: {exc}") from None


def key_id_of(public_hex: str) -> str:
    """A stable id for a public key: ``sm2-`` and the first 16 bytes of SM3 over its 65 bytes."""
    return "sm2-" + sm3(bytes.fromhex(public_hex))[:16].hex()


def issue_signing_key(master: MasterKey, signer_reference: str) -> SigningKey:
    """A new SM2 key pair for ``signer_reference`` (``Practitioner/...``), private part wrapped.

    The wrapped blob is bound to the signer and the key id: moved to another signer's row it no
    longer unwraps.
    """
    private_hex, public_hex = sm2.generate_keypair()
    key_id = key_id_of(public_hex)
    wrapped = master.wrap(
        bytes.fromhex(private_hex) + bytes.fromhex(public_hex), _wrap_aad(signer_reference, key_id)
    )
    return SigningKey(key_id=key_id, public_hex=public_hex, wrapped_private_key=wrapped)


def sign_with_wrapped(
    resource: dict[str, Any],
    *,
    master: MasterKey,
    wrapped_private_key: bytes,
    signer_reference: str,
    signer_display: str | None,
    key_id: str,
    when: datetime,
    role: Role = "author",
) -> dict[str, Any]:
    """Sign the stored version ``resource`` with a wrapped key; return the Provenance (SIG-1).

    This is the one entry point for domains (prescriptions, visit records, reports; ONL-5).
    """
    material = master.unwrap(wrapped_private_key, _wrap_aad(signer_reference, key_id))
    if len(material) != _PRIVATE_BYTES + _PUBLIC_BYTES:
        raise CryptoError("CRYPTO-KEY-INVALID", "the wrapped signing key has the wrong length")
    return build_provenance(
        resource,
        signer_reference=signer_reference,
        signer_display=signer_display,
        private_hex=material[:_PRIVATE_BYTES].hex(),
        public_hex=material[_PRIVATE_BYTES:].hex(),
        when=when,
        key_id=key_id,
        role=role,
    )


def build_provenance(
    resource: dict[str, Any],
    *,
    signer_reference: str,
    signer_display: str | None,
    private_hex: str,
    public_hex: str,
    when: datetime,
    key_id: str,
    role: Role = "author",
) -> dict[str, Any]:
    """A FHIR R4 Provenance signing exactly ``resource`` at its ``meta.versionId`` (SIG-1).

    Signature.data is base64 of the DER SM2 signature (SM3 with Z_A, default user ID) over
    :func:`canonical_json` of the resource as stored, meta.versionId, lastUpdated and source
    included. Domain code calls :func:`sign_with_wrapped`, which never hands out the raw key.
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise CryptoError("SIG-TIME-NAIVE", "the signing time must carry a timezone")
    if role not in _ROLES:
        raise CryptoError("SIG-ROLE-UNKNOWN", f"role {role!r} is not author or verifier")
    target = _version_reference(resource)
    if target is None:
        raise CryptoError(
            "SIG-UNVERSIONED", "only a stored version (resourceType, id, meta.versionId) is signed"
        )
    signature = sm2.sign(private_hex, public_hex, canonical_json(resource))
    agent_display, type_code, type_display = _ROLES[role]
    who: dict[str, Any] = {"reference": signer_reference}
    if signer_display:
        who["display"] = signer_display
    instant = when.isoformat(timespec="milliseconds")
    return {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "recorded": instant,
        "agent": [
            {
                "type": {
                    "coding": [{"system": PARTICIPANT_TYPE, "code": role, "display": agent_display}]
                },
                "who": dict(who),
            }
        ],
        "signature": [
            {
                "extension": [{"url": KEY_ID_EXTENSION, "valueString": key_id}],
                "type": [{"system": SIGNATURE_TYPE, "code": type_code, "display": type_display}],
                "when": instant,
                "who": dict(who),
                "targetFormat": TARGET_FORMAT,
                "sigFormat": SIG_FORMAT,
                "data": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }


def signer_of(provenance: dict[str, Any]) -> tuple[str, str] | None:
    """(Signature.who reference, key id) of the first SM2 signature, to look the public key up.

    Look the key up by both: then a Provenance whose ``who`` was changed finds no key, or a key
    that does not verify.
    """
    for _, sig in _sm2_signatures(provenance):
        who = sig.get("who")
        ref = who.get("reference") if isinstance(who, dict) else None
        key_id = _key_id(sig)
        if isinstance(ref, str) and key_id is not None:
            return ref, key_id
    return None


def verify_provenance(
    provenance: dict[str, Any], resource: dict[str, Any], public_hex: str
) -> list[Finding]:
    """Findings for every way ``provenance`` fails to prove ``resource`` signed (SIG-1).

    ``SIG-MISMATCH-TARGET``: the Provenance names another resource or version. ``SIG-MISSING``:
    no SM2 signature. ``SIG-MALFORMED``: its data is not base64. ``SIG-KEY-INVALID``: the public
    key is not an SM2 point. ``SIG-INVALID``: the resource, the signature or the key differs from
    what was signed. An empty list means verified.
    """
    findings: list[Finding] = []
    expected = _version_reference(resource)
    targets = provenance.get("target")
    actual = (
        targets[0].get("reference")
        if isinstance(targets, list) and len(targets) == 1 and isinstance(targets[0], dict)
        else None
    )
    if expected is None or actual != expected:
        findings.append(
            Finding(
                "SIG-MISMATCH-TARGET",
                "error",
                f"签名对象不是该资源的这一版本（签名对象 {actual}，资源 {expected}）",
                f"The Provenance targets {actual}, not this resource version {expected}",
                "Provenance.target",
            )
        )
    signatures = _sm2_signatures(provenance)
    if not signatures:
        findings.append(
            Finding(
                "SIG-MISSING",
                "error",
                "没有 SM2 电子签名",
                f"The Provenance has no signature with sigFormat {SIG_FORMAT}",
                "Provenance.signature",
            )
        )
        return findings
    try:
        content: bytes | None = canonical_json(resource)
    except CryptoError:
        content = None
    for index, sig in signatures:
        path = f"Provenance.signature[{index}]"
        raw = _base64(sig.get("data"))
        if raw is None:
            findings.append(
                Finding(
                    "SIG-MALFORMED",
                    "error",
                    "签名数据不是有效的 base64",
                    "The signature data is not valid base64",
                    f"{path}.data",
                )
            )
            continue
        try:
            valid = content is not None and sm2.verify(public_hex, content, raw)
        except CryptoError:
            findings.append(
                Finding(
                    "SIG-KEY-INVALID",
                    "error",
                    "验证公钥不是有效的 SM2 公钥",
                    "The public key to verify with is not an SM2 public key",
                    path,
                )
            )
            continue
        if not valid:
            findings.append(
                Finding(
                    "SIG-INVALID",
                    "error",
                    "签名验证失败：资源或签名已被改动，或不是该密钥所签",
                    "The signature does not verify: the resource or the signature changed "
                    "after signing, or another key signed it",
                    f"{path}.data",
                )
            )
    return findings


def _version_reference(resource: dict[str, Any]) -> str | None:
    meta = resource.get("meta")
    parts = (
        resource.get("resourceType"),
        resource.get("id"),
        meta.get("versionId") if isinstance(meta, dict) else None,
    )
    if not all(isinstance(p, str) and p for p in parts):
        return None
    return f"{parts[0]}/{parts[1]}/_history/{parts[2]}"


def _sm2_signatures(provenance: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    sigs = provenance.get("signature")
    if not isinstance(sigs, list):
        return []
    return [
        (i, s)
        for i, s in enumerate(sigs)
        if isinstance(s, dict) and s.get("sigFormat") == SIG_FORMAT
    ]


def _key_id(signature: dict[str, Any]) -> str | None:
    for ext in signature.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == KEY_ID_EXTENSION:
            value = ext.get("valueString")
            return value if isinstance(value, str) else None
    return None


def _base64(data: object) -> bytes | None:
    """Strict base64: exactly one text per byte string, so no character can change unnoticed."""
    if not isinstance(data, str) or not _BASE64.fullmatch(data):
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == data else None


def _wrap_aad(signer_reference: str, key_id: str) -> bytes:
    return b"sm2-signing-key\x00" + signer_reference.encode() + b"\x00" + key_id.encode()
