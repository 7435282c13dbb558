"""Access and refresh tokens: issuing, looking up, revoking, and turning a bearer token into the
``Principal`` that access control builds its actor from.

Tokens are opaque random strings (256 bits, ``secrets``); only their SM3 hash is stored, so
reading the table yields no usable token. Every check reads the token, its client and its
account afresh: revoking a token, disabling a client or suspending an account applies to the
next request, on every node that shares the database (or asks by introspection).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from sqlalchemy import Connection, bindparam, func, insert, or_, select, update

from carenet.access import oauth_errors
from carenet.access.clients import secret_hash
from carenet.access.oauth_schema import oauth_clients, oauth_tokens
from carenet.access.schema import accounts, guardianships
from carenet.access.scopes import Scope, parse_scopes
from carenet.store.direct import Prebuilt

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class OAuthPolicy:
    """Lifetimes of what the authorization server hands out, in seconds (from Settings)."""

    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # RFC 6749 §4.1.2: "a maximum authorization code lifetime of 10 minutes is RECOMMENDED".
    code_ttl_seconds: int = 120
    session_ttl_seconds: int = 8 * 3600
    login_ticket_ttl_seconds: int = 300


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class TokenRecord(TokenMixin):
    """One row of ``oauth_tokens`` as authlib's TokenMixin (revocation, introspection, refresh).

    ``now`` is the instant of the request it was read in, so expiry is judged by the injected
    clock, not the wall clock."""

    id: str
    client_id: str
    account_id: str | None
    scope: str
    launch_patient: str | None
    grant_type: str
    family_id: str
    code_hash: str | None
    issued_at: int
    access_expires: int
    refresh_expires: int | None
    refreshed_at: int | None
    revoked_at: int | None
    now: int
    matched: str  # "access_token" | "refresh_token": which of the two was presented

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, (self.access_expires - self.issued_at) // 1000)

    def is_expired(self) -> bool:
        if self.matched == "refresh_token":
            return self.refresh_expires is None or self.now >= self.refresh_expires
        return self.now >= self.access_expires

    def is_revoked(self) -> bool:
        if self.revoked_at is not None:
            return True
        return self.matched == "refresh_token" and self.refreshed_at is not None


def _record(row: Any, now: int, matched: str) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        client_id=row.client_id,
        account_id=row.account_id,
        scope=row.scope,
        launch_patient=row.launch_patient,
        grant_type=row.grant_type,
        family_id=row.family_id,
        code_hash=row.code_hash,
        issued_at=row.issued_at,
        access_expires=row.access_expires,
        refresh_expires=row.refresh_expires,
        refreshed_at=row.refreshed_at,
        revoked_at=row.revoked_at,
        now=now,
        matched=matched,
    )


def find_token(
    conn: Connection, token: str, now: int, hint: str | None = None
) -> TokenRecord | None:
    """The row of an access or refresh token (whatever its state), or None if unknown."""
    if not token or len(token) > 512:
        return None
    digest = secret_hash(token)
    order = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token"]
    order += [k for k in ("access_token", "refresh_token") if k not in order]
    for kind in order:
        column = (
            oauth_tokens.c.access_hash if kind == "access_token" else oauth_tokens.c.refresh_hash
        )
        row = conn.execute(select(oauth_tokens).where(column == digest)).first()
        if row is not None:
            return _record(row, now, kind)
    return None


def store_token(
    conn: Connection,
    policy: OAuthPolicy,
    now: int,
    body: dict[str, Any],
    *,
    client_id: str,
    account_id: str | None,
    grant_type: str,
    launch_patient: str | None = None,
    code_hash: str | None = None,
    family_id: str | None = None,
) -> None:
    """Store the token pair of an RFC 6749 §5.1 response ``body`` (by hash only) and add SMART's
    ``patient`` launch context to the body when there is one."""
    access = body["access_token"]
    refresh = body.get("refresh_token")
    conn.execute(
        insert(oauth_tokens).values(
            id=str(uuid.uuid4()),
            access_hash=secret_hash(access),
            refresh_hash=secret_hash(refresh) if refresh else None,
            client_id=client_id,
            account_id=account_id,
            scope=body.get("scope") or "",
            launch_patient=launch_patient,
            grant_type=grant_type,
            code_hash=code_hash,
            family_id=family_id or str(uuid.uuid4()),
            issued_at=now,
            access_expires=now + policy.access_token_ttl_seconds * 1000,
            refresh_expires=now + policy.refresh_token_ttl_seconds * 1000 if refresh else None,
        )
    )
    if launch_patient:
        body["patient"] = launch_patient.split("/", 1)[1]


def revoke_token(conn: Connection, token_id: str, now: int) -> None:
    conn.execute(
        update(oauth_tokens)
        .where(oauth_tokens.c.id == token_id, oauth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def mark_refreshed(conn: Connection, token_id: str, now: int) -> bool:
    """Rotate: the refresh token of this row is used up and its access token ends too. False when
    another request rotated it first (the loser's request is refused)."""
    return (
        conn.execute(
            update(oauth_tokens)
            .where(oauth_tokens.c.id == token_id, oauth_tokens.c.refreshed_at.is_(None))
            .values(refreshed_at=now, revoked_at=now)
        ).rowcount
        == 1
    )


def revoke_family(conn: Connection, family_id: str, now: int) -> int:
    """Revoke every token refreshed from the same grant (a rotated refresh token came back)."""
    return conn.execute(
        update(oauth_tokens)
        .where(oauth_tokens.c.family_id == family_id, oauth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


def revoke_code_tokens(conn: Connection, code_hash: str, now: int) -> int:
    """Revoke every token issued from an authorization code, and their refreshed successors
    (RFC 6749 §4.1.2: a code used twice revokes what it gave)."""
    families = select(oauth_tokens.c.family_id).where(oauth_tokens.c.code_hash == code_hash)
    return conn.execute(
        update(oauth_tokens)
        .where(
            or_(oauth_tokens.c.code_hash == code_hash, oauth_tokens.c.family_id.in_(families)),
            oauth_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    ).rowcount


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid bearer token speaks for: the account (None for a client acting only as
    itself), the client, the granted scopes and the SMART launch context."""

    token_id: str
    client_id: str
    account_id: str | None
    account_role: str | None
    account_kind: str | None
    fhir_user: str | None  # "Patient/…" or "Practitioner/…" of the account
    scope: str
    scopes: tuple[Scope, ...]
    launch_patient: str | None  # "Patient/<id>" for patient/* scopes
    expires_at: int  # ms since the epoch
    # What the access layer needs of the account, read with the token in one statement so
    # that no request reads the account row again (None/False for a client acting as itself).
    real_name_verified: bool = False
    organization_ref: str | None = None  # "Organization/<id>" of an institution admin
    has_wards: bool = False  # an active guardianship that has not ended

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(s.context for s in self.scopes if s.context is not None)


def _principal_statement() -> Any:
    wards = (
        select(func.count())
        .select_from(guardianships)
        .where(
            guardianships.c.account_id == oauth_tokens.c.account_id,
            guardianships.c.status == "active",
            or_(guardianships.c.ends_at.is_(None), guardianships.c.ends_at > bindparam("now")),
        )
        .scalar_subquery()
    )
    return (
        select(
            oauth_tokens,
            oauth_clients.c.status.label("client_status"),
            accounts.c.status.label("account_status"),
            accounts.c.role,
            accounts.c.kind,
            accounts.c.fhir_ref,
            accounts.c.organization_ref,
            accounts.c.real_name_verified_at,
            wards.label("wards"),
        )
        .join(oauth_clients, oauth_clients.c.client_id == oauth_tokens.c.client_id)
        .outerjoin(accounts, accounts.c.id == oauth_tokens.c.account_id)
        .where(oauth_tokens.c.access_hash == bindparam("digest"))
    )


# Built once: building the expression anew cost more CPU than PostgreSQL spends running it.
_PRINCIPAL = Prebuilt(_principal_statement())


def principal_for_token(conn: Connection, token: str, now: int) -> Principal:
    """The Principal of an access token, or a coded 401: OAUTH-TOKEN-INVALID (unknown, forged,
    revoked, a refresh token, disabled client, inactive account) or OAUTH-TOKEN-EXPIRED.

    One statement reads the token, its client, its account and whether the account has wards:
    this runs on every API request, and at release time (放号) a thousand of them arrive at
    once, so each round trip here is paid a thousand times."""
    if not token or len(token) > 512:
        raise oauth_errors.token_invalid()
    row = _PRINCIPAL.run(conn, {"digest": secret_hash(token), "now": now}).first()
    # A refresh token presented as an access token matches no access_hash: invalid, as it is.
    if row is None or row.revoked_at is not None:
        raise oauth_errors.token_invalid()
    record = _record(row, now, "access_token")
    if record.is_expired():
        raise oauth_errors.token_expired()
    if row.client_status != "active":
        raise oauth_errors.token_invalid()
    if record.account_id is not None and row.account_status != "active":
        # No row (a deleted account) leaves account_status None: invalid too.
        raise oauth_errors.token_invalid()
    person = record.account_id is not None
    return Principal(
        token_id=record.id,
        client_id=record.client_id,
        account_id=record.account_id,
        account_role=row.role if person else None,
        account_kind=row.kind if person else None,
        fhir_user=row.fhir_ref if person else None,
        scope=record.scope,
        scopes=tuple(parse_scopes(record.scope)),
        launch_patient=record.launch_patient,
        expires_at=record.access_expires,
        real_name_verified=person and row.real_name_verified_at is not None,
        organization_ref=row.organization_ref if person else None,
        has_wards=person and bool(row.wards),
    )


def parse_authorization_header(value: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None without the header; a coded 401
    (OAUTH-TOKEN-MALFORMED) for any other scheme or shape."""
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise oauth_errors.token_malformed()
    return token
