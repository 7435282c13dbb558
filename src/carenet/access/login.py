"""Login with login name + password, the TOTP second factor of staff, and TOTP enrolment.

A failed login changes state on purpose (the failure counter that leads to a lockout), so the
login services do not raise: they return a ``LoginResult``; the caller commits its transaction
(with the audit event of the attempt) and then answers with ``result.error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, or_, select, update

from carenet.access import errors
from carenet.access.accounts import Account, AuthContext, _account, account_row
from carenet.access.passwords import hash_password, needs_rehash, verify_password
from carenet.access.rules import normalise_login_name
from carenet.access.schema import accounts
from carenet.access.throttle import (
    clear_failures,
    lockout_remaining,
    record_failure,
    throttle_key,
)
from carenet.access.totp import matching_step, new_secret, provisioning_uri
from carenet.fhir.outcomes import OperationOutcomeError

NextStep = Literal["done", "totp", "totp-enrol"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome of one login step.

    ``error`` set: the step failed (commit, then raise it). Otherwise ``account`` is who logged
    in and ``next_step`` says what remains: ``done`` (logged in), ``totp`` (a staff member must
    give a TOTP code) or ``totp-enrol`` (a staff member must enrol a TOTP authenticator first).
    Until ``done`` the caller holds only a short-lived pre-authentication, not a session.
    """

    account: Account | None = None
    next_step: NextStep | None = None
    error: OperationOutcomeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str  # base32, to type in by hand
    provisioning_uri: str  # otpauth://, to show as a QR code


def _fail(error: OperationOutcomeError) -> LoginResult:
    return LoginResult(error=error)


def _login_key(ctx: AuthContext, row: Any) -> str:
    return throttle_key(ctx.protector, "login", row.login_name or f"account:{row.id}")


def login_with_password(
    conn: Connection,
    ctx: AuthContext,
    login_name: str,
    password: str,
    *,
    totp_code: str | None = None,
) -> LoginResult:
    """Check login name and password (and, for staff, the TOTP code if given).

    Unknown name and wrong password give the same AUTH-BAD-CREDENTIALS, take the same time
    (a dummy hash is verified) and count towards the same lockout. After
    ``policy.max_failed_logins`` failures within ``policy.failure_window_seconds`` the login is
    refused with AUTH-LOCKED for ``policy.lockout_seconds``, even with the right password. The
    account status (AUTH-ACCOUNT-INACTIVE) is told only to whoever knows the password.
    """
    now = ctx.clock()
    name = normalise_login_name(login_name) or login_name.strip().lower()
    key = throttle_key(ctx.protector, "login", name)
    remaining = lockout_remaining(conn, key, now)
    if remaining:
        return _fail(errors.locked(remaining))
    row = conn.execute(select(accounts).where(accounts.c.login_name == name)).first()
    stored = row.password_hash if row is not None and row.kind == "person" else None
    if not verify_password(stored, password, ctx.policy):
        record_failure(conn, key, now, ctx.policy)
        return _fail(errors.bad_credentials())
    assert row is not None and stored is not None
    if row.status != "active":
        return _fail(errors.account_inactive(row.status))
    if needs_rehash(stored, ctx.policy):
        conn.execute(
            update(accounts)
            .where(accounts.c.id == row.id)
            .values(password_hash=hash_password(password, ctx.policy), updated=now)
        )
    account = _account(row)
    if not account.is_staff:
        clear_failures(conn, key)
        return LoginResult(account, "done")
    if not account.totp_enrolled:
        return LoginResult(account, "totp-enrol")
    if totp_code is None:
        return LoginResult(account, "totp")
    return _check_totp(conn, ctx, row, totp_code, key, now)


def verify_totp(conn: Connection, ctx: AuthContext, account_id: str, code: str) -> LoginResult:
    """The second step of a staff login, after ``login_with_password`` answered ``totp``.

    A code is accepted within ``policy.totp_valid_window`` steps either side of now, and each
    time step only once (AUTH-TOTP-REPLAYED). Wrong codes count towards the login's lockout.
    """
    now = ctx.clock()
    row = account_row(conn, account_id)
    key = _login_key(ctx, row)
    remaining = lockout_remaining(conn, key, now)
    if remaining:
        return _fail(errors.locked(remaining))
    if row.status != "active":
        return _fail(errors.account_inactive(row.status))
    if row.totp_secret_enc is None:
        return LoginResult(_account(row), "totp-enrol")
    return _check_totp(conn, ctx, row, code, key, now)


def _check_totp(
    conn: Connection, ctx: AuthContext, row: Any, code: str, key: str, now: int
) -> LoginResult:
    secret = ctx.protector.decrypt(getattr(row, "totp_secret_enc"), field="totp_secret")  # noqa: B009
    step = matching_step(secret, code, now, ctx.policy)
    if step is None:
        record_failure(conn, key, now, ctx.policy)
        return _fail(errors.totp_invalid())
    account_id = row.id
    # Accept each step once: the conditional update is atomic, so two concurrent logins with
    # the same code cannot both pass (the second waits for the first's row lock on PostgreSQL
    # and then matches no row; SQLite serialises writers).
    accepted = conn.execute(
        update(accounts)
        .where(
            accounts.c.id == account_id,
            or_(accounts.c.totp_last_step.is_(None), accounts.c.totp_last_step < step),
        )
        .values(totp_last_step=step, updated=now)
    ).rowcount
    if accepted != 1:
        record_failure(conn, key, now, ctx.policy)
        return _fail(errors.totp_replayed())
    clear_failures(conn, key)
    return LoginResult(_account(account_row(conn, account_id)), "done")


def begin_totp_enrolment(conn: Connection, ctx: AuthContext, account_id: str) -> TotpEnrolment:
    """A new TOTP secret for the account, pending until confirmed with a code from the app.

    Refused (AUTH-TOTP-ALREADY-ENROLLED) when one is enrolled: replacing it would let whoever
    has the password alone take over the second factor; an administrator resets it instead.
    """
    row = account_row(conn, account_id, lock=True)
    if row.kind != "person":
        raise errors.role_invalid(row.role)
    if row.totp_secret_enc is not None:
        raise errors.totp_already_enrolled()
    secret = new_secret()
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            totp_pending_enc=ctx.protector.encrypt(secret, field="totp_secret"),
            updated=ctx.clock(),
        )
    )
    label = row.login_name or account_id
    return TotpEnrolment(secret, provisioning_uri(secret, label, ctx.policy))


def confirm_totp_enrolment(
    conn: Connection, ctx: AuthContext, account_id: str, code: str
) -> LoginResult:
    """Confirm the pending secret with a current code: it becomes the account's second factor
    and, in a login that answered ``totp-enrol``, completes the login (``done``)."""
    now = ctx.clock()
    row = account_row(conn, account_id, lock=True)
    key = _login_key(ctx, row)
    remaining = lockout_remaining(conn, key, now)
    if remaining:
        return _fail(errors.locked(remaining))
    if row.totp_secret_enc is not None:
        return _fail(errors.totp_already_enrolled())
    if row.totp_pending_enc is None:
        return _fail(errors.totp_no_pending())
    secret = ctx.protector.decrypt(row.totp_pending_enc, field="totp_secret")
    step = matching_step(secret, code, now, ctx.policy)
    if step is None:
        record_failure(conn, key, now, ctx.policy)
        return _fail(errors.totp_invalid())
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            totp_secret_enc=row.totp_pending_enc,
            totp_pending_enc=None,
            totp_enrolled_at=now,
            totp_last_step=step,
            updated=now,
        )
    )
    clear_failures(conn, key)
    return LoginResult(_account(account_row(conn, account_id)), "done")


def reset_totp(conn: Connection, ctx: AuthContext, account_id: str) -> None:
    """Remove the account's TOTP (an administrator's act, e.g. a lost phone): the next login
    answers ``totp-enrol``."""
    account_row(conn, account_id, lock=True)
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            totp_secret_enc=None,
            totp_pending_enc=None,
            totp_enrolled_at=None,
            totp_last_step=None,
            updated=ctx.clock(),
        )
    )
