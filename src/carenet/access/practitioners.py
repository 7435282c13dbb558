"""Practitioners' roles at institutions (多点执业): registration with licence and qualification,
verification by the institution, suspension, and the active roles a practitioner may act in.

RULES.md ONL-4: a doctor acts online only with a legal qualification and a practice registered or
filed at the institution. Each PractitionerRole has a verification state in
``practitioner_role_status`` (pending → verified ⇄ suspended) and ``PractitionerRole.active``
mirrors it; a role acts clinically only when both say so. ``active_roles`` reads both at every
call, so a suspension takes effect on the very next request.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from carenet.access import errors
from carenet.access.accounts import AuthContext, account_row
from carenet.access.schema import practitioner_role_status
from carenet.fhir import identifiers as ids
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import Repository

PRACTITIONER_ROLE_CODES = "http://terminology.hl7.org/CodeSystem/practitioner-role"

#: Role → (licence identifier system, PractitionerRole.code in HL7 practitioner-role).
ROLE_LICENCES: dict[str, tuple[str, str]] = {
    "doctor": (ids.PRACTITIONER_LICENCE, "doctor"),
    "nurse": (ids.NURSE_LICENCE, "nurse"),
    "pharmacist": (ids.PHARMACIST_REGISTRATION, "pharmacist"),
}

PractitionerRoleKind = Literal["doctor", "nurse", "pharmacist"]
# Roles whose members sign (ONL-5): doctors sign prescriptions, pharmacists their reviews.
SIGNING_ROLES = frozenset({"doctor", "pharmacist"})


def _split(ref: str, res_type: str) -> str:
    if not isinstance(ref, str) or ref.count("/") != 1 or not ref.startswith(res_type + "/"):
        raise errors.reference_invalid(str(ref), res_type)
    return ref.split("/", 1)[1]


def _read(repo: Repository, ref: str, res_type: str) -> dict[str, Any]:
    try:
        return repo.read(res_type, _split(ref, res_type))
    except OperationOutcomeError as exc:
        if exc.issues and exc.issues[0].details_code == "AUTH-REFERENCE-INVALID":
            raise
        raise errors.reference_invalid(ref, res_type) from exc


def _has_identifier(resource: dict[str, Any], system: str, value: str) -> bool:
    return any(
        i.get("system") == system and i.get("value") == value
        for i in resource.get("identifier") or []
    )


def _uscc(organization: dict[str, Any]) -> str:
    for i in organization.get("identifier") or []:
        if i.get("system") == ids.ORGANIZATION_USCC and i.get("value"):
            return str(i["value"])
    return str(organization["id"])


def register_practitioner_role(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    *,
    practitioner_ref: str,
    organization_ref: str,
    role: PractitionerRoleKind,
    licence_number: str,
    qualification_number: str | None = None,
    specialty: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A PractitionerRole for a practitioner at an institution, pending verification (inactive).

    The licence must be one the Practitioner carries (``Practitioner.identifier`` with the
    role's licence system); the qualification certificate number (doctors) too when given.
    Errors: AUTH-ROLE-INVALID, AUTH-REFERENCE-INVALID, AUTH-ROLE-LICENCE-MISMATCH,
    AUTH-ROLE-DUPLICATE (one role per practitioner and institution).
    """
    if role not in ROLE_LICENCES:
        raise errors.role_invalid(role)
    licence_system, role_code = ROLE_LICENCES[role]
    practitioner = _read(repo, practitioner_ref, "Practitioner")
    organization = _read(repo, organization_ref, "Organization")
    licence = licence_number.strip()
    if not licence or not _has_identifier(practitioner, licence_system, licence):
        raise errors.role_licence_mismatch()
    if qualification_number is not None and not _has_qualification(
        practitioner, qualification_number.strip()
    ):
        raise errors.role_licence_mismatch()
    pid, oid = practitioner["id"], organization["id"]
    taken = conn.execute(
        select(practitioner_role_status.c.role_id).where(
            practitioner_role_status.c.practitioner_id == pid,
            practitioner_role_status.c.organization_id == oid,
        )
    ).first()
    if taken is not None:
        raise errors.role_duplicate()
    role_id = str(uuid.uuid4())
    now = ctx.clock()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(practitioner_role_status).values(
                    role_id=role_id,
                    practitioner_id=pid,
                    organization_id=oid,
                    role_code=role,
                    licence_system=licence_system,
                    licence_number=licence,
                    status="pending",
                    created=now,
                    updated=now,
                )
            )
    except IntegrityError as exc:
        raise errors.role_duplicate() from exc
    identifier = [
        {"system": ids.PRACTITIONER_ROLE_ID, "value": f"{licence}@{_uscc(organization)}"},
        {"use": "official", "system": licence_system, "value": licence},
    ]
    if qualification_number:
        identifier.append(
            {"system": ids.PRACTITIONER_QUALIFICATION, "value": qualification_number.strip()}
        )
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "identifier": identifier,
        "active": False,
        "practitioner": {"reference": f"Practitioner/{pid}"},
        "organization": {"reference": f"Organization/{oid}"},
        "code": [{"coding": [{"system": PRACTITIONER_ROLE_CODES, "code": role_code}]}],
    }
    if specialty:
        resource["specialty"] = specialty
    return repo.create("PractitionerRole", resource, res_id=role_id)


def _has_qualification(practitioner: dict[str, Any], number: str) -> bool:
    return any(
        _has_identifier(q, ids.PRACTITIONER_QUALIFICATION, number)
        for q in practitioner.get("qualification") or []
    ) or _has_identifier(practitioner, ids.PRACTITIONER_QUALIFICATION, number)


def _status_row(conn: Connection, role_ref: str) -> Any:
    role_id = _split(role_ref, "PractitionerRole")
    q = select(practitioner_role_status).where(practitioner_role_status.c.role_id == role_id)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise errors.role_not_found(role_ref)
    return row


def _require_admin(conn: Connection, actor_account_id: str, organization_id: str) -> None:
    actor = account_row(conn, actor_account_id)
    allowed = actor.status == "active" and (
        actor.role == "regional_admin"
        or (
            actor.role == "institution_admin"
            and actor.organization_ref == f"Organization/{organization_id}"
        )
    )
    if not allowed:
        raise errors.verifier_not_allowed()


def _set_active(repo: Repository, role_id: str, active: bool) -> dict[str, Any]:
    current = repo.read("PractitionerRole", role_id)
    if current.get("active") is active:
        return current
    stored, _ = repo.update("PractitionerRole", role_id, {**current, "active": active})
    return stored


def verify_practitioner_role(
    conn: Connection, repo: Repository, ctx: AuthContext, role_ref: str, verifier_account_id: str
) -> dict[str, Any]:
    """The institution (its admin, or a regional admin) confirms the role: it becomes active.
    Also reinstates a suspended role. The licence is checked again against the Practitioner.
    Errors: AUTH-ROLE-NOT-FOUND, AUTH-ROLE-VERIFIER-NOT-ALLOWED, AUTH-ROLE-STATE,
    AUTH-ROLE-LICENCE-MISMATCH."""
    row = _status_row(conn, role_ref)
    _require_admin(conn, verifier_account_id, row.organization_id)
    if row.status == "verified":
        raise errors.role_state(row.status, "verified")
    practitioner = repo.read("Practitioner", row.practitioner_id)
    if practitioner.get("active") is False or not _has_identifier(
        practitioner, row.licence_system, row.licence_number
    ):
        raise errors.role_licence_mismatch()
    now = ctx.clock()
    conn.execute(
        update(practitioner_role_status)
        .where(practitioner_role_status.c.role_id == row.role_id)
        .values(status="verified", verified_by=verifier_account_id, verified_at=now, updated=now)
    )
    if ctx.master is not None and row.role_code in SIGNING_ROLES:
        # Each doctor and pharmacist gets an SM2 key pair (issue 3; SIG-1): prescriptions are
        # signed by the doctor and the review by the pharmacist (ONL-5).
        from carenet.crypto.keystore import ensure_key

        ensure_key(conn, ctx.master, f"Practitioner/{row.practitioner_id}", clock=ctx.clock)
    return _set_active(repo, row.role_id, True)


def suspend_practitioner_role(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    role_ref: str,
    actor_account_id: str,
    reason: str,
) -> dict[str, Any]:
    """Suspend a role (licence revoked, disciplinary measure, consent withdrawn): it stops
    acting at once. Errors: AUTH-ROLE-NOT-FOUND, AUTH-ROLE-VERIFIER-NOT-ALLOWED,
    AUTH-ROLE-STATE (already suspended)."""
    row = _status_row(conn, role_ref)
    _require_admin(conn, actor_account_id, row.organization_id)
    if row.status == "suspended":
        raise errors.role_state(row.status, "suspended")
    now = ctx.clock()
    conn.execute(
        update(practitioner_role_status)
        .where(practitioner_role_status.c.role_id == row.role_id)
        .values(
            status="suspended",
            suspended_by=actor_account_id,
            suspended_at=now,
            reason=reason.strip()[:2000] or None,
            updated=now,
        )
    )
    return _set_active(repo, row.role_id, False)


def active_roles(
    conn: Connection,
    repo: Repository,
    practitioner_ref: str,
    *,
    organization_ref: str | None = None,
) -> list[dict[str, Any]]:
    """The PractitionerRoles the practitioner may act in now (optionally at one institution):
    verified, ``active`` true, and the Practitioner not inactive. Read from the database at
    every call, never cached."""
    pid = _split(practitioner_ref, "Practitioner")
    conds = [
        practitioner_role_status.c.practitioner_id == pid,
        practitioner_role_status.c.status == "verified",
    ]
    if organization_ref is not None:
        conds.append(
            practitioner_role_status.c.organization_id == _split(organization_ref, "Organization")
        )
    role_ids = list(
        conn.execute(
            select(practitioner_role_status.c.role_id)
            .where(*conds)
            .order_by(practitioner_role_status.c.created, practitioner_role_status.c.role_id)
        ).scalars()
    )
    if not role_ids:
        return []
    try:
        if repo.read("Practitioner", pid).get("active") is False:
            return []
    except OperationOutcomeError:
        return []
    out = []
    for role_id in role_ids:
        try:
            resource = repo.read("PractitionerRole", role_id)
        except OperationOutcomeError:
            continue  # deleted
        if resource.get("active") is True:
            out.append(resource)
    return out


def require_active_role(
    conn: Connection, repo: Repository, practitioner_ref: str, organization_ref: str
) -> dict[str, Any]:
    """The practitioner's active role at the institution; AUTH-ROLE-NOT-ACTIVE (403) if none.
    Call it before every clinical act (ONL-4)."""
    roles = active_roles(conn, repo, practitioner_ref, organization_ref=organization_ref)
    if not roles:
        raise errors.role_not_active()
    return roles[0]
