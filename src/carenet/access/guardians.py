"""Guardians (监护人): an account acting for a minor or an elder it is bound to, through a
RelatedPerson; and ``acting_for``, the patients an account may act for.

The rules of who may be bound are ``rules.guardian_findings`` (民法典 Arts 17, 27, 28; 老年人
权益保障法 Art 2; RULES.md PRIV-1 for children under 14, whose binding records the guardian's
consent as a FHIR Consent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from carenet.access import errors
from carenet.access.accounts import AuthContext, account_row
from carenet.access.ports import Clock, local_date, now_ms
from carenet.access.realname import resolve_patient
from carenet.access.rules import (
    GUARDIAN_RELATIONSHIPS,
    V3_ROLE_CODE,
    age_on,
    guardian_findings,
    nth_birthday,
)
from carenet.access.schema import guardianships
from carenet.fhir import outcomes
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import Repository, format_instant

CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@dataclass(frozen=True, slots=True)
class Guardianship:
    id: str
    account_id: str
    patient_ref: str
    related_person_ref: str
    consent_ref: str | None
    relationship: str
    basis: str  # minor | elder
    ends_at: int | None


def _birth(resource: dict[str, Any]) -> date | None:
    value = resource.get("birthDate")
    if not isinstance(value, str) or len(value) != 10:
        return None  # a partial date cannot prove an age
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _start_of_day_ms(day: date, tz: str) -> int:
    return int(
        datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC).timestamp() * 1000
    )


def _read_patient(repo: Repository, ref: str) -> dict[str, Any]:
    if not ref.startswith("Patient/") or ref.count("/") != 1:
        raise errors.reference_invalid(ref, "Patient")
    try:
        return repo.read("Patient", ref.split("/", 1)[1])
    except OperationOutcomeError as exc:
        raise errors.reference_invalid(ref, "Patient") from exc


def bind_guardian(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    guardian_account_id: str,
    patient_ref: str,
    relationship: str,
    *,
    guardian_consent: bool = False,
) -> Guardianship:
    """Bind a real-name verified patient account as guardian of ``patient_ref``.

    ``relationship`` is a v3-RoleCode code (MTH, FTH, PRN, GRMTH, GRFTH, GRPRN, GUARD for a
    minor; SPS, HUSB, WIFE, CHILD, SONC, DAUC, GRNDCHILD, SIB, GUARD for an elder). Creates a
    RelatedPerson (and, for a child under 14, a Consent recording the guardian's consent).
    Errors: AUTH-REALNAME-REQUIRED, AUTH-GUARDIAN-RELATIONSHIP-INVALID, AUTH-REFERENCE-INVALID,
    AUTH-GUARDIAN-SELF, AUTH-GUARDIAN-ALREADY-BOUND, and 422 with the findings
    AUTH-GUARDIAN-WARD-NOT-ELIGIBLE, AUTH-GUARDIAN-RELATIONSHIP-NOT-ALLOWED,
    AUTH-GUARDIAN-NOT-ADULT, AUTH-GUARDIAN-CONSENT-REQUIRED.
    """
    code = relationship.strip().upper()
    if code not in GUARDIAN_RELATIONSHIPS:
        raise errors.guardian_relationship_invalid(relationship)
    row = account_row(conn, guardian_account_id, lock=True)
    if row.status != "active":
        raise errors.account_inactive(row.status)
    if row.role != "patient" or row.real_name_verified_at is None or row.fhir_ref is None:
        raise errors.realname_required()
    if row.fhir_ref == patient_ref:
        raise errors.guardian_self()
    ward = _read_patient(repo, patient_ref)
    guardian = _read_patient(repo, row.fhir_ref)
    ward_id = ward["id"]
    existing = conn.execute(
        select(guardianships).where(
            guardianships.c.account_id == guardian_account_id,
            guardianships.c.patient_id == ward_id,
        )
    ).first()
    if existing is not None and existing.status == "active":
        raise errors.guardian_already_bound()
    now = ctx.clock()
    today = local_date(now, ctx.policy.timezone)
    ward_birth = _birth(ward)
    basis, findings = guardian_findings(
        relationship=code,
        ward_birth=ward_birth,
        guardian_birth=_birth(guardian),
        guardian_consent=guardian_consent,
        today=today,
        policy=ctx.policy,
    )
    if findings or basis is None:
        raise outcomes.invalid_resource([f.to_issue() for f in findings], 422)
    assert ward_birth is not None
    display, zh = GUARDIAN_RELATIONSHIPS[code]
    related: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": patient_ref},
        "relationship": [
            {"coding": [{"system": V3_ROLE_CODE, "code": code, "display": display}], "text": zh}
        ],
    }
    if guardian.get("name"):
        related["name"] = guardian["name"]
    if guardian.get("gender"):
        related["gender"] = guardian["gender"]
    rp = repo.create("RelatedPerson", related)
    consent_id: str | None = None
    if basis == "minor" and age_on(ward_birth, today) < ctx.policy.guardian_consent_age:
        consent_id = repo.create("Consent", _consent(patient_ref, rp["id"], now))["id"]
    ends_at = (
        _start_of_day_ms(nth_birthday(ward_birth, ctx.policy.adult_age), ctx.policy.timezone)
        if basis == "minor"
        else None
    )
    values = {
        "related_person_id": rp["id"],
        "consent_id": consent_id,
        "relationship": code,
        "basis": basis,
        "ends_at": ends_at,
        "status": "active",
        "created": now,
        "revoked_at": None,
    }
    if existing is not None:  # re-binding after a revocation
        gid = existing.id
        conn.execute(update(guardianships).where(guardianships.c.id == gid).values(**values))
    else:
        gid = str(uuid.uuid4())
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(guardianships).values(
                        id=gid, account_id=guardian_account_id, patient_id=ward_id, **values
                    )
                )
        except IntegrityError as exc:
            raise errors.guardian_already_bound() from exc
    return Guardianship(
        gid,
        guardian_account_id,
        patient_ref,
        f"RelatedPerson/{rp['id']}",
        None if consent_id is None else f"Consent/{consent_id}",
        code,
        basis,
        ends_at,
    )


def _consent(patient_ref: str, related_person_id: str, now: int) -> dict[str, Any]:
    """The guardian's separate consent to processing a child's personal information (PRIV-1)."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {"system": CONSENT_SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}
            ]
        },
        "category": [
            {"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}
        ],
        "patient": {"reference": patient_ref},
        "dateTime": format_instant(now),
        "performer": [{"reference": f"RelatedPerson/{related_person_id}"}],
        "policyRule": {
            "coding": [{"system": V3_ACT_CODE, "code": "OPTIN", "display": "opt-in"}],
            "text": "个人信息保护法第31条：处理不满十四周岁未成年人个人信息，应当取得其监护人的同意",
        },
        "provision": {"type": "permit"},
    }


def bind_dependant(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    guardian_account_id: str,
    name: str,
    resident_id: str,
    relationship: str,
    *,
    guardian_consent: bool = False,
) -> Guardianship:
    """Add a family member by name and resident ID (resolved to the one Patient of that ID,
    created if none) and bind the account as their guardian. On any error the caller rolls
    back, so a Patient created on the way is not kept."""
    resolved = resolve_patient(conn, repo, ctx, name, resident_id)
    return bind_guardian(
        conn,
        repo,
        ctx,
        guardian_account_id,
        resolved.patient_ref,
        relationship,
        guardian_consent=guardian_consent,
    )


def revoke_guardian(
    conn: Connection, repo: Repository, ctx: AuthContext, guardian_account_id: str, patient_ref: str
) -> None:
    """End a guardianship: the RelatedPerson becomes inactive; ``acting_for`` drops the ward."""
    row = conn.execute(
        select(guardianships).where(
            guardianships.c.account_id == guardian_account_id,
            guardianships.c.patient_id == patient_ref.split("/", 1)[-1],
            guardianships.c.status == "active",
        )
    ).first()
    if row is None:
        raise outcomes.not_found(f"no active guardianship of {patient_ref} for this account")
    related = repo.read("RelatedPerson", row.related_person_id)
    repo.update("RelatedPerson", related["id"], {**related, "active": False})
    conn.execute(
        update(guardianships)
        .where(guardianships.c.id == row.id)
        .values(status="revoked", revoked_at=ctx.clock())
    )


def acting_for(conn: Connection, account_id: str, *, clock: Clock = now_ms) -> list[str]:
    """The Patient references an account may act for, read afresh at every call: its own
    Patient first (when real-name verified), then its wards with an active guardianship that
    has not ended (a minor's ends at 18). Empty for an unknown account."""
    refs: list[str] = []
    try:
        row = account_row(conn, account_id)
    except OperationOutcomeError:
        return refs
    if row.status != "active":
        return refs
    return own_then_wards(
        row.fhir_ref,
        row.real_name_verified_at is not None,
        active_wards(conn, account_id, clock=clock),
    )


def own_then_wards(fhir_ref: str | None, verified: bool, wards: list[str]) -> list[str]:
    """The order and dedup of the patients an account acts for: its own Patient first (only
    when real-name verified), then its wards, each once. Shared by ``acting_for`` (the portal,
    from the account row) and the access layer (from the token's Principal)."""
    refs = [fhir_ref] if verified and fhir_ref else []
    refs.extend(w for w in wards if w not in refs)
    return refs


def active_wards(conn: Connection, account_id: str, *, clock: Clock = now_ms) -> list[str]:
    """The Patient references of an account's wards: active guardianships not yet ended."""
    now = clock()
    wards = conn.execute(
        select(guardianships.c.patient_id)
        .where(
            guardianships.c.account_id == account_id,
            guardianships.c.status == "active",
            or_(guardianships.c.ends_at.is_(None), guardianships.c.ends_at > now),
        )
        .order_by(guardianships.c.created, guardianships.c.patient_id)
    ).scalars()
    return [f"Patient/{p}" for p in wards]
