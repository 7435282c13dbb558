"""Signed, expiring values for the browser: the portal session cookie, the CSRF token and the
short-lived ticket between the steps of a staff login (password, then TOTP).

HMAC-SM3 under a key derived from the master secret (HKDF-SM3, its own label), so nothing is
stored on the server: a session is the account id, an expiry and a CSRF secret, signed. Every
use re-reads the account, so suspending it ends its sessions at the next request. Each value is
signed for one purpose; a login ticket is never accepted as a session or the other way round.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carenet.crypto.hashing import hmac_sm3

SESSION = "session"
CSRF = "csrf"
LOGIN_TICKET = "login-ticket"
_MAX_LENGTH = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Signer(<key>)"

    @classmethod
    def from_secret(cls, master_secret: str) -> Signer:
        key = HKDF(
            algorithm=hashes.SM3(),
            length=32,
            salt=b"carenet/master-key/v1",
            info=b"carenet/v1/browser-session",
        ).derive(master_secret.encode("utf-8"))
        return cls(key)

    def sign(self, purpose: str, claims: dict[str, Any], *, now_ms: int, ttl_seconds: int) -> str:
        body = _b64(orjson.dumps({**claims, "exp": now_ms + ttl_seconds * 1000}))
        return f"{body}.{_b64(self._mac(purpose, body))}"

    def unsign(self, purpose: str, value: str | None, *, now_ms: int) -> dict[str, Any] | None:
        """The claims of a value signed for ``purpose`` that has not expired, else None."""
        if not value or len(value) > _MAX_LENGTH or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            given = _unb64(mac)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self._mac(purpose, body)):
            return None
        try:
            claims = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int):
            return None
        return claims if now_ms < claims["exp"] else None

    def _mac(self, purpose: str, body: str) -> bytes:
        return hmac_sm3(self._key, purpose.encode("ascii") + b"\x00" + body.encode("ascii"))


def new_csrf_secret() -> str:
    return secrets.token_urlsafe(24)
