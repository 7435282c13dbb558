"""Real-name verification (实名认证): a patient account proves a name and an 18-digit resident ID
and is bound to the one Patient that resident ID resolves to.

The same resident ID always resolves to the same Patient: ``resident_index`` maps the ID's blind
index to the Patient id with a unique key, so concurrent verifications (two parents registering
their child at once) cannot create two Patients — the loser of the race reads the winner's row.
The resident ID itself is in ``Patient.identifier`` (system ``RESIDENT_ID``), as FHIR requires.

What this does not do: check the pair against the public-security identity service or a face
match. A deployment plugs that in before calling :func:`verify_real_name`.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from carenet.access import errors
from carenet.access.accounts import Account, AuthContext, account_row, get_account
from carenet.access.ports import local_date
from carenet.access.rules import normalise_person_name
from carenet.access.schema import accounts, resident_index
from carenet.fhir import outcomes
from carenet.fhir.findings import Finding
from carenet.fhir.identifiers import (
    RESIDENT_ID,
    normalise_resident_id,
    parse_resident_id,
    validate_resident_id,
)
from carenet.store.repository import Repository


@dataclass(frozen=True, slots=True)
class ResolvedPatient:
    patient_id: str
    created: bool  # True when this call created the Patient
    blind_index: str
    warnings: tuple[Finding, ...]  # e.g. ID-RESIDENT-REGION-UNKNOWN

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient_id}"


@dataclass(frozen=True, slots=True)
class RealNameResult:
    account: Account
    patient_ref: str
    created_patient: bool
    warnings: tuple[Finding, ...]


def check_identity(ctx: AuthContext, name: str, resident_id: str) -> tuple[str, str, list[Finding]]:
    """The normalised name and resident ID, and the warnings; raises a 400 listing every error
    (AUTH-REALNAME-NAME-INVALID, ID-RESIDENT-*). RULES.md ID-1.

    An unknown region code (ID-RESIDENT-REGION-UNKNOWN) only warns unless
    ``policy.block_unknown_region``: a number keeps the code of where it was issued for life,
    codes are withdrawn over time, and a node knows only its own region's divisions, so blocking
    would turn away every resident born elsewhere.
    """
    issues: list[outcomes.Issue] = []
    clean_name = normalise_person_name(name)
    if clean_name is None:
        issues.extend(errors.realname_name_invalid().issues)
    rid = normalise_resident_id(resident_id)
    findings = validate_resident_id(
        rid,
        known_region=ctx.known_region,
        today=local_date(ctx.clock(), ctx.policy.timezone),
        expression="resident_id",
    )
    if ctx.policy.block_unknown_region:
        findings = [
            dataclasses.replace(f, severity="error")
            if f.code == "ID-RESIDENT-REGION-UNKNOWN"
            else f
            for f in findings
        ]
    issues.extend(f.to_issue("invalid") for f in findings if f.is_error)
    if issues:
        raise outcomes.invalid_resource(issues, 400)
    assert clean_name is not None
    return clean_name, rid, [f for f in findings if not f.is_error]


def _names(patient: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for n in patient.get("name") or []:
        if n.get("text"):
            out.add(n["text"])
        family, given = n.get("family") or "", "".join(n.get("given") or [])
        if family or given:
            out.add(family + given)  # 张伟
            out.add(" ".join(x for x in [*(n.get("given") or []), family] if x))  # Anna Li
    return {x for x in (normalise_person_name(v) for v in out) if x}


def _check_name(patient: dict[str, Any], name: str) -> None:
    known = _names(patient)
    if known and name.casefold() not in {k.casefold() for k in known}:
        raise errors.realname_mismatch()


def resolve_patient(
    conn: Connection, repo: Repository, ctx: AuthContext, name: str, resident_id: str
) -> ResolvedPatient:
    """The one Patient of this resident ID, created (with the ID, name, sex and birth date) if
    none exists; refuses a name that differs from the Patient's (AUTH-REALNAME-MISMATCH).

    Looks in ``resident_index`` first, then for a Patient already carrying the ID (loaded from
    a hospital system or the demo) which it then indexes. Invalid input raises before anything
    is written.
    """
    clean_name, rid, warnings = check_identity(ctx, name, resident_id)
    blind = ctx.protector.blind_index(rid, field="resident_id")
    found = _indexed(conn, repo, blind)
    if found is not None:
        _check_name(found, clean_name)
        return ResolvedPatient(found["id"], False, blind, tuple(warnings))
    matches = repo.find("Patient", f"identifier={RESIDENT_ID}|{rid}", limit=2)
    if len(matches) > 1:
        raise errors.duplicate_patients()
    if matches:
        _check_name(matches[0], clean_name)
    patient_id = matches[0]["id"] if matches else str(uuid.uuid4())
    try:
        with conn.begin_nested():
            conn.execute(
                insert(resident_index).values(
                    blind_index=blind, patient_id=patient_id, created=ctx.clock()
                )
            )
    except IntegrityError:
        # Someone indexed this ID first (PostgreSQL let us wait for their commit): use theirs.
        found = _indexed(conn, repo, blind)
        if found is None:
            raise outcomes.conflict("the resident ID was indexed concurrently; retry") from None
        _check_name(found, clean_name)
        return ResolvedPatient(found["id"], False, blind, tuple(warnings))
    if matches:
        return ResolvedPatient(patient_id, False, blind, tuple(warnings))
    parts = parse_resident_id(rid)
    repo.create(
        "Patient",
        {
            "resourceType": "Patient",
            "identifier": [
                {
                    "use": "official",
                    "type": {"text": "居民身份证"},
                    "system": RESIDENT_ID,
                    "value": rid,
                }
            ],
            "active": True,
            "name": [{"use": "official", "text": clean_name}],
            "gender": parts.sex,
            "birthDate": parts.birth_date.isoformat(),
        },
        res_id=patient_id,
    )
    return ResolvedPatient(patient_id, True, blind, tuple(warnings))


def _indexed(conn: Connection, repo: Repository, blind: str) -> dict[str, Any] | None:
    patient_id = conn.execute(
        select(resident_index.c.patient_id).where(resident_index.c.blind_index == blind)
    ).scalar_one_or_none()
    return None if patient_id is None else repo.read("Patient", patient_id)


def verify_real_name(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    account_id: str,
    name: str,
    resident_id: str,
) -> RealNameResult:
    """Verify a patient account's real name and bind it to its Patient (RULES.md ID-1).

    Errors, each leaving everything unchanged: AUTH-ACCOUNT-NOT-FOUND, AUTH-REALNAME-NOT-
    APPLICABLE (not a patient account), AUTH-REALNAME-NAME-INVALID and ID-RESIDENT-* (400),
    AUTH-REALNAME-MISMATCH, AUTH-REALNAME-ALREADY-VERIFIED (verified as someone else),
    AUTH-REALNAME-ALREADY-BOUND (the ID belongs to another account), AUTH-REALNAME-DUPLICATE-
    PATIENTS. Verifying again with the same identity is a no-op.
    """
    row = account_row(conn, account_id, lock=True)
    if row.kind != "person" or row.role != "patient":
        raise errors.realname_not_applicable()
    if row.status != "active":
        raise errors.account_inactive(row.status)
    clean_name, rid, _ = check_identity(ctx, name, resident_id)
    blind = ctx.protector.blind_index(rid, field="resident_id")
    if row.resident_index is not None and row.resident_index != blind:
        raise errors.realname_already_verified()
    other = conn.execute(
        select(accounts.c.id).where(accounts.c.resident_index == blind, accounts.c.id != row.id)
    ).first()
    if other is not None:
        raise errors.realname_already_bound()
    resolved = resolve_patient(conn, repo, ctx, clean_name, rid)
    if row.resident_index == blind:
        return RealNameResult(
            get_account(conn, account_id), resolved.patient_ref, False, resolved.warnings
        )
    try:
        with conn.begin_nested():
            conn.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(
                    fhir_ref=resolved.patient_ref,
                    resident_index=blind,
                    real_name_verified_at=ctx.clock(),
                    updated=ctx.clock(),
                )
            )
    except IntegrityError as exc:
        raise errors.realname_already_bound() from exc
    return RealNameResult(
        get_account(conn, account_id), resolved.patient_ref, resolved.created, resolved.warnings
    )
