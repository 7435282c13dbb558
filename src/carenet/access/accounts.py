"""Accounts of people and system clients: registration, lookup and administrative status.

Every service takes the caller's Connection (one transaction, DESIGN.md principle 2) and never
commits. An account is a credential holder; the person it is lives in FHIR (``fhir_ref``:
Patient or Practitioner).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from carenet.access import errors
from carenet.access.passwords import hash_password
from carenet.access.policy import (
    ACCOUNT_STATUSES,
    CLINICAL_ROLES,
    STAFF_ROLES,
    SYSTEM_ROLES,
    AuthPolicy,
)
from carenet.access.ports import Clock, FieldProtector, now_ms
from carenet.access.rules import normalise_login_name, normalise_phone, password_acceptable
from carenet.access.schema import accounts
from carenet.adapters.notify import Notifier
from carenet.crypto.keys import MasterKey
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import Repository


@dataclass(frozen=True)
class AuthContext:
    """What the identity services need, built once by bootstrap from Settings."""

    protector: FieldProtector
    policy: AuthPolicy = field(default_factory=AuthPolicy)
    clock: Clock = now_ms
    notifier: Notifier | None = None
    #: GB/T 2260 codes this node knows (for resident IDs); None skips the check.
    known_region: Callable[[str], bool] | Collection[str] | None = None
    #: The node's MasterKey, for issuing signers' SM2 keys (None: keys are issued on first use).
    master: MasterKey | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: Literal["person", "system"]
    role: str
    status: str
    fhir_ref: str | None
    organization_ref: str | None
    login_name: str | None
    has_phone: bool
    totp_enrolled: bool
    real_name_verified: bool
    created: int

    @property
    def is_staff(self) -> bool:
        return self.kind == "person" and self.role in STAFF_ROLES


def _account(row: Any) -> Account:
    return Account(
        id=row.id,
        kind=row.kind,
        role=row.role,
        status=row.status,
        fhir_ref=row.fhir_ref,
        organization_ref=row.organization_ref,
        login_name=row.login_name,
        has_phone=row.phone_index is not None,
        totp_enrolled=row.totp_enrolled_at is not None,
        real_name_verified=row.real_name_verified_at is not None,
        created=row.created,
    )


def account_row(conn: Connection, account_id: str, *, lock: bool = False) -> Any:
    q = select(accounts).where(accounts.c.id == account_id)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise errors.account_not_found()
    return row


def get_account(conn: Connection, account_id: str) -> Account:
    """The account; AUTH-ACCOUNT-NOT-FOUND (404) when there is none."""
    return _account(account_row(conn, account_id))


def find_account_by_login_name(conn: Connection, login_name: str) -> Account | None:
    name = normalise_login_name(login_name)
    if name is None:
        return None
    row = conn.execute(select(accounts).where(accounts.c.login_name == name)).first()
    return None if row is None else _account(row)


def find_account_by_phone(conn: Connection, ctx: AuthContext, phone: str) -> Account | None:
    number = normalise_phone(phone)
    if number is None:
        return None
    index = ctx.protector.blind_index(number, field="phone")
    row = conn.execute(select(accounts).where(accounts.c.phone_index == index)).first()
    return None if row is None else _account(row)


def account_phone(conn: Connection, ctx: AuthContext, account_id: str) -> str | None:
    """The account's phone number in clear (to send to it); mask it before showing it."""
    row = account_row(conn, account_id)
    return None if row.phone_enc is None else ctx.protector.decrypt(row.phone_enc, field="phone")


def _require_ref(repo: Repository, ref: str | None, res_type: str) -> str:
    if not ref or ref.count("/") != 1 or ref.split("/")[0] != res_type:
        raise errors.reference_invalid(str(ref), res_type)
    try:
        repo.read(res_type, ref.split("/")[1])
    except OperationOutcomeError as exc:
        raise errors.reference_invalid(ref, res_type) from exc
    return ref


def _insert(conn: Connection, ctx: AuthContext, values: dict[str, Any]) -> Account:
    # Pre-checks give the precise error; the unique constraints settle races.
    if (
        values.get("login_name") is not None
        and conn.execute(
            select(accounts.c.id).where(accounts.c.login_name == values["login_name"])
        ).first()
    ):
        raise errors.login_name_taken()
    if (
        values.get("phone_index") is not None
        and conn.execute(
            select(accounts.c.id).where(accounts.c.phone_index == values["phone_index"])
        ).first()
    ):
        raise errors.phone_taken()
    now = ctx.clock()
    row = {
        "id": str(uuid.uuid4()),
        "status": "active",
        "created": now,
        "updated": now,
        **values,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(accounts).values(**row))
    except IntegrityError as exc:
        raise (
            errors.login_name_taken() if values.get("login_name") else errors.phone_taken()
        ) from exc
    return get_account(conn, row["id"])


def _login_and_password(
    ctx: AuthContext, login_name: str | None, password: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if login_name is not None:
        name = normalise_login_name(login_name)
        if name is None:
            raise errors.login_name_invalid()
        out["login_name"] = name
    if password is not None:
        if not password_acceptable(password, ctx.policy):
            raise errors.password_weak(ctx.policy.min_password_length)
        out["password_hash"] = hash_password(password, ctx.policy)
    return out


def _phone(ctx: AuthContext, phone: str | None) -> dict[str, Any]:
    if phone is None:
        return {}
    number = normalise_phone(phone)
    if number is None:
        raise errors.phone_invalid()
    return {
        "phone_index": ctx.protector.blind_index(number, field="phone"),
        "phone_enc": ctx.protector.encrypt(number, field="phone"),
    }


def register_staff(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    *,
    role: str,
    login_name: str,
    password: str,
    practitioner_ref: str | None = None,
    organization_ref: str | None = None,
    phone: str | None = None,
) -> Account:
    """A staff account (doctor, pharmacist, nurse, institution/regional admin, regulator).

    Doctors, pharmacists and nurses link to an existing Practitioner; an institution admin names
    an existing Organization. Staff log in with login name + password + TOTP, which they enrol
    at their first login.
    """
    if role not in STAFF_ROLES:
        raise errors.role_invalid(role)
    values = _login_and_password(ctx, login_name, password)
    if role in CLINICAL_ROLES or practitioner_ref is not None:
        values["fhir_ref"] = _require_ref(repo, practitioner_ref, "Practitioner")
    if role == "institution_admin" or organization_ref is not None:
        values["organization_ref"] = _require_ref(repo, organization_ref, "Organization")
    values.update(_phone(ctx, phone))
    return _insert(conn, ctx, {"kind": "person", "role": role, **values})


def register_patient(
    conn: Connection,
    ctx: AuthContext,
    *,
    phone: str,
    login_name: str | None = None,
    password: str | None = None,
) -> Account:
    """A patient account by mobile number (login by SMS code; a password is optional). It links
    to a Patient only through real-name verification."""
    values = _phone(ctx, phone)
    values.update(_login_and_password(ctx, login_name, password))
    return _insert(conn, ctx, {"kind": "person", "role": "patient", **values})


def register_system_client(
    conn: Connection,
    repo: Repository,
    ctx: AuthContext,
    *,
    role: str,
    name: str,
    organization_ref: str | None = None,
) -> Account:
    """A system client (courier company, device gateway, another CareNet node). It has no
    password: it authenticates with OAuth2 client credentials bound to this account id."""
    if role not in SYSTEM_ROLES:
        raise errors.role_invalid(role)
    values = _login_and_password(ctx, name, None)
    if organization_ref is not None:
        values["organization_ref"] = _require_ref(repo, organization_ref, "Organization")
    return _insert(conn, ctx, {"kind": "system", "role": role, **values})


def set_account_status(
    conn: Connection,
    ctx: AuthContext,
    account_id: str,
    status: Literal["active", "locked", "suspended", "disabled"],
) -> Account:
    """Administrative status: ``locked`` (until an admin unlocks; the timed lockout after failed
    logins is separate), ``suspended``, ``disabled`` or back to ``active``. Takes effect on the
    next login or token check, which read the status each time."""
    if status not in ACCOUNT_STATUSES:
        raise errors.auth_error(
            400,
            "invalid",
            "AUTH-STATUS-INVALID",
            f"无效状态{status!r}",
            f"invalid status {status!r}",
        )
    account_row(conn, account_id, lock=True)
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(status=status, updated=ctx.clock())
    )
    return get_account(conn, account_id)


def set_password(conn: Connection, ctx: AuthContext, account_id: str, password: str) -> None:
    row = account_row(conn, account_id, lock=True)
    if row.kind != "person":
        raise errors.role_invalid(row.role)
    values = _login_and_password(ctx, None, password)
    conn.execute(
        update(accounts).where(accounts.c.id == account_id).values(updated=ctx.clock(), **values)
    )


def require_real_name(conn: Connection, account_id: str) -> str:
    """The Patient reference of a real-name verified patient account; AUTH-REALNAME-REQUIRED
    (403) otherwise. Call it before any clinical action a patient takes."""
    row = account_row(conn, account_id)
    if row.real_name_verified_at is None or row.fhir_ref is None:
        raise errors.realname_required()
    return str(row.fhir_ref)
