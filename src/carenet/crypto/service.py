"""Sign a stored resource version and verify a stored signature: the one service domains call.

SIG-1 (RULES.md, 电子签名法 Art 13-14): the signature is made with the signer's own key (kept
wrapped in :mod:`carenet.crypto.keystore`, unwrapped only inside
:func:`carenet.crypto.signing.sign_with_wrapped`) over the RFC 8785 canonical JSON of one exact
resource version, and any later change to that version or to the signature is detected by
:func:`verify`. SIG-2 (密码法 Art 27): SM2 with SM3, keys wrapped with SM4-GCM. ONL-5: the
doctor's signature on an online prescription (``role="author"``) and the pharmacist's on its
review (``role="verifier"``) are made here; prescriptions, visit records and reports call this
and do not re-implement it.

The Provenance is written through the caller's :class:`~carenet.store.repository.Repository`,
so it is validated, indexed and (behind the API's repository) access-checked and audited in the
same transaction as the signing. Nothing here commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from carenet.crypto import keystore, signing
from carenet.crypto.keys import MasterKey
from carenet.crypto.signing import Role
from carenet.fhir.findings import Finding
from carenet.fhir.outcomes import OperationOutcomeError

if TYPE_CHECKING:
    from carenet.store.repository import Repository

_VERSIONED = re.compile(r"([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/([A-Za-z0-9\-.]{1,64})")


def sign(
    conn: Connection,
    repo: Repository,
    master: MasterKey,
    resource_type: str,
    resource_id: str,
    signer_ref: str,
    *,
    role: Role = "author",
    when: datetime | None = None,
    signer_display: str | None = None,
    clock: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Sign the current version of ``resource_type/resource_id`` as ``signer_ref``; store it.

    Reads the version through ``repo.read`` (so the signature covers exactly what is stored,
    ``meta`` included), signs with the signer's active key (issued on first use), writes the
    Provenance with ``repo.create`` and returns it as stored (SIG-1, SIG-2, ONL-5). ``role`` is
    ``author`` for the prescribing doctor, ``verifier`` for the reviewing pharmacist. A missing
    or deleted resource raises the repository's ``OperationOutcomeError`` (404/410); a
    ``CryptoError`` means the key cannot be unwrapped (another master secret, a moved blob).
    """
    tick = clock or repo.clock
    resource = repo.read(resource_type, resource_id)
    key = keystore.ensure_key(conn, master, signer_ref, clock=tick)
    instant = when or datetime.fromtimestamp(tick() / 1000, tz=UTC)
    provenance = signing.sign_with_wrapped(
        resource,
        master=master,
        wrapped_private_key=key.wrapped_private_key,
        signer_reference=signer_ref,
        signer_display=signer_display,
        key_id=key.key_id,
        when=instant,
        role=role,
    )
    return repo.create("Provenance", provenance)


def verify(conn: Connection, repo: Repository, provenance: dict[str, Any]) -> list[Finding]:
    """Findings for every way ``provenance`` fails to prove its target version signed (SIG-1).

    The target is the exact version ``Type/id/_history/v`` the Provenance names, read with
    ``repo.vread``; the public key is the one ``signing.signer_of`` names (signer and key id),
    looked up in the keystore, retired keys included. Beyond the codes of
    :func:`carenet.crypto.signing.verify_provenance` (``SIG-MISMATCH-TARGET``, ``SIG-MISSING``,
    ``SIG-MALFORMED``, ``SIG-KEY-INVALID``, ``SIG-INVALID``): ``SIG-TARGET-UNKNOWN`` when the
    target is not one stored, readable version, ``SIG-KEY-UNKNOWN`` when no stored key matches
    the signer and key id. An empty list means verified (SIG-1, SIG-2, ONL-5).
    """
    findings: list[Finding] = []
    resource = _target(repo, provenance, findings)
    signer = signing.signer_of(provenance)
    public_hex = None if signer is None else keystore.public_key(conn, signer[0], signer[1])
    if public_hex is None:
        if not _has_sm2_signature(provenance):
            findings.append(
                Finding(
                    "SIG-MISSING",
                    "error",
                    "没有 SM2 电子签名",
                    f"The Provenance has no signature with sigFormat {signing.SIG_FORMAT}",
                    "Provenance.signature",
                )
            )
        else:
            named = "nobody" if signer is None else f"{signer[0]} key {signer[1]}"
            findings.append(
                Finding(
                    "SIG-KEY-UNKNOWN",
                    "error",
                    "找不到签名人的验证公钥",
                    f"No stored signing key matches the signature's signer and key id ({named})",
                    "Provenance.signature",
                )
            )
        return findings
    if resource is None:
        return findings
    return findings + signing.verify_provenance(provenance, resource, public_hex)


def _target(
    repo: Repository, provenance: dict[str, Any], findings: list[Finding]
) -> dict[str, Any] | None:
    targets = provenance.get("target")
    reference = (
        targets[0].get("reference")
        if isinstance(targets, list) and len(targets) == 1 and isinstance(targets[0], dict)
        else None
    )
    match = _VERSIONED.fullmatch(reference) if isinstance(reference, str) else None
    if match is None:
        findings.append(
            Finding(
                "SIG-TARGET-UNKNOWN",
                "error",
                "签名对象不是某一资源的确定版本",
                f"The Provenance target {reference!r} is not one versioned reference "
                "Type/id/_history/version",
                "Provenance.target",
            )
        )
        return None
    try:
        return repo.vread(match[1], match[2], match[3])
    except OperationOutcomeError:
        findings.append(
            Finding(
                "SIG-TARGET-UNKNOWN",
                "error",
                "找不到被签名的资源版本",
                f"The signed version {reference} is not stored (unknown, or a deletion)",
                "Provenance.target",
            )
        )
        return None


def _has_sm2_signature(provenance: dict[str, Any]) -> bool:
    sigs = provenance.get("signature")
    return isinstance(sigs, list) and any(
        isinstance(s, dict) and s.get("sigFormat") == signing.SIG_FORMAT for s in sigs
    )
