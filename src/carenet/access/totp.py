"""TOTP (RFC 6238) codes with pyotp: which time step a code belongs to, so that each step can be
accepted once only (replay protection). Pure: no I/O."""

from __future__ import annotations

import hmac

import pyotp

from carenet.access.policy import AuthPolicy


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account_name: str, policy: AuthPolicy) -> str:
    """The otpauth:// URI an authenticator app scans (as a QR code)."""
    return _totp(secret, policy).provisioning_uri(name=account_name, issuer_name=policy.totp_issuer)


def matching_step(secret: str, code: str, at_ms: int, policy: AuthPolicy) -> int | None:
    """The time step (``floor(t / interval)``) within ``policy.totp_valid_window`` steps of
    ``at_ms`` whose code equals ``code``; None if none does."""
    code = code.strip()
    if len(code) != policy.totp_digits or not code.isascii() or not code.isdigit():
        return None
    totp = _totp(secret, policy)
    at = at_ms // 1000
    step = totp.timecode(at)
    found: int | None = None
    # Compare every candidate (no early exit) in constant time.
    for offset in range(-policy.totp_valid_window, policy.totp_valid_window + 1):
        candidate = totp.generate_otp(step + offset)
        if hmac.compare_digest(candidate, code) and found is None:
            found = step + offset
    return found


def code_at(secret: str, at_ms: int, policy: AuthPolicy) -> str:
    """The code of the step containing ``at_ms`` (what an authenticator shows then)."""
    return _totp(secret, policy).at(at_ms // 1000)


def _totp(secret: str, policy: AuthPolicy) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=policy.totp_digits, interval=policy.totp_interval_seconds)
