"""Patients' login by mobile number and a one-time code sent by SMS (验证码登录).

A code has ``policy.otp_digits`` digits from ``secrets``, is valid ``policy.otp_ttl_seconds``,
allows ``policy.otp_max_attempts`` wrong tries and is used once. Sending is limited per phone to
one per ``policy.otp_resend_interval_seconds`` and ``policy.otp_max_per_day`` per 24 hours. Only a
keyed hash of a code is stored (the outbox holds it encrypted until delivered). A first login by
code registers the patient account (验证码登录即注册), so sending a code reveals nothing about
which numbers have accounts.
"""

from __future__ import annotations

import secrets
import uuid

from sqlalchemy import Connection, func, insert, select, text, update

from carenet.access import errors
from carenet.access.accounts import AuthContext, find_account_by_phone, register_patient
from carenet.access.login import LoginResult
from carenet.access.rules import normalise_phone
from carenet.access.schema import otp_codes

PURPOSE_LOGIN = "login"
_DAY_MS = 24 * 3600 * 1000


def _code_hash(ctx: AuthContext, code_id: str, code: str) -> str:
    # Keyed (so a copy of the table alone cannot be brute-forced) and salted by the code's id.
    return ctx.protector.blind_index(f"{code_id}:{code}", field="otp_code")


def send_login_code(conn: Connection, ctx: AuthContext, phone: str) -> str:
    """Create a login code for ``phone`` and queue it through the notifier; returns the message
    id. Raises AUTH-PHONE-INVALID (400) or AUTH-OTP-RATE-LIMITED (429, with Retry-After); a
    refusal changes nothing. An earlier unused code for the phone stops being valid."""
    if ctx.notifier is None:
        raise RuntimeError("AuthContext.notifier is required to send one-time codes")
    number = normalise_phone(phone)
    if number is None:
        raise errors.phone_invalid()
    policy = ctx.policy
    now = ctx.clock()
    index = ctx.protector.blind_index(number, field="phone")
    if conn.dialect.name == "postgresql":
        # Two concurrent requests for one phone must not both pass the rate limit.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"otp:{index}"})
    mine = (otp_codes.c.phone_index == index, otp_codes.c.purpose == PURPOSE_LOGIN)
    last = conn.execute(select(func.max(otp_codes.c.created)).where(*mine)).scalar_one()
    interval_ms = policy.otp_resend_interval_seconds * 1000
    if last is not None and now - last < interval_ms:
        raise errors.otp_rate_limited(-(-(last + interval_ms - now) // 1000))
    day = conn.execute(
        select(func.count(), func.min(otp_codes.c.created)).where(
            *mine, otp_codes.c.created > now - _DAY_MS
        )
    ).one()
    if day[0] >= policy.otp_max_per_day:
        raise errors.otp_rate_limited(-(-(day[1] + _DAY_MS - now) // 1000))
    conn.execute(
        update(otp_codes)
        .where(*mine, otp_codes.c.consumed_at.is_(None), otp_codes.c.superseded_at.is_(None))
        .values(superseded_at=now)
    )
    code = f"{secrets.randbelow(10**policy.otp_digits):0{policy.otp_digits}d}"
    code_id = str(uuid.uuid4())
    conn.execute(
        insert(otp_codes).values(
            id=code_id,
            purpose=PURPOSE_LOGIN,
            phone_index=index,
            code_hash=_code_hash(ctx, code_id, code),
            created=now,
            expires=now + policy.otp_ttl_seconds * 1000,
            attempts=0,
        )
    )
    minutes = max(1, policy.otp_ttl_seconds // 60)
    return ctx.notifier.send(conn, "sms", number, "login-code", {"code": code, "minutes": minutes})


def login_with_code(conn: Connection, ctx: AuthContext, phone: str, code: str) -> LoginResult:
    """Log in (registering a patient account at the first login) with the latest code sent to
    ``phone``. Errors: AUTH-PHONE-INVALID, AUTH-OTP-INVALID (wrong, none sent, or superseded),
    AUTH-OTP-EXPIRED, AUTH-OTP-REPLAYED (already used), AUTH-OTP-TOO-MANY-ATTEMPTS,
    AUTH-ACCOUNT-INACTIVE, AUTH-LOGIN-METHOD-NOT-ALLOWED (staff must use password + TOTP).
    Like every login step it returns a result: a wrong try is counted, so commit first."""
    number = normalise_phone(phone)
    if number is None:
        return LoginResult(error=errors.phone_invalid())
    now = ctx.clock()
    index = ctx.protector.blind_index(number, field="phone")
    q = (
        select(otp_codes)
        .where(otp_codes.c.phone_index == index, otp_codes.c.purpose == PURPOSE_LOGIN)
        .order_by(otp_codes.c.created.desc(), otp_codes.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    code = code.strip()
    if row is None:
        return LoginResult(error=errors.otp_invalid())
    matches = secrets.compare_digest(row.code_hash, _code_hash(ctx, row.id, code))
    if row.consumed_at is not None:
        return LoginResult(error=errors.otp_replayed() if matches else errors.otp_invalid())
    if row.attempts >= ctx.policy.otp_max_attempts:
        return LoginResult(error=errors.otp_too_many_attempts())
    if now >= row.expires:
        return LoginResult(error=errors.otp_expired())
    if not matches:
        attempts = row.attempts + 1
        conn.execute(update(otp_codes).where(otp_codes.c.id == row.id).values(attempts=attempts))
        left = ctx.policy.otp_max_attempts - attempts
        return LoginResult(
            error=errors.otp_too_many_attempts() if left <= 0 else errors.otp_invalid(left)
        )
    used = conn.execute(
        update(otp_codes)
        .where(otp_codes.c.id == row.id, otp_codes.c.consumed_at.is_(None))
        .values(consumed_at=now)
    ).rowcount
    if used != 1:
        return LoginResult(error=errors.otp_replayed())
    account = find_account_by_phone(conn, ctx, number)
    if account is None:
        account = register_patient(conn, ctx, phone=number)
    if account.status != "active":
        return LoginResult(error=errors.account_inactive(account.status))
    if account.is_staff or account.kind != "person":
        return LoginResult(error=errors.login_method_not_allowed())
    return LoginResult(account, "done")
