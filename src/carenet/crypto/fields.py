"""At-rest protection of resident ID numbers and phone numbers: encrypt, index, mask.

PRIV-1 (RULES.md, 个人信息保护法 Art 28): ID numbers and phone numbers identify a person, so
they are stored as SM4-GCM tokens (SIG-2, 密码法 Art 27) with an HMAC-SM3 blind index beside
them for exact-match search, and shown masked (1101**********002X, 138****5678) in lists and
logs. ID-1 defines the resident ID form. No I/O.
"""

from __future__ import annotations

import base64
import hmac
import re
import unicodedata
from collections.abc import Callable

from carenet.crypto import aead
from carenet.crypto.errors import CryptoError
from carenet.crypto.hashing import hmac_sm3
from carenet.crypto.keys import FINGERPRINT_BYTES, MasterKey

RESIDENT_ID = "resident-id"
PHONE = "phone"
TOKEN_VERSION = 1
_HEADER_BYTES = 1 + FINGERPRINT_BYTES + aead.NONCE_BYTES
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def normalise_resident_id(value: str) -> str:
    """NFKC (full-width ０-９ and Ｘ from Chinese input methods), trimmed, uppercased (ID-1)."""
    return unicodedata.normalize("NFKC", value).strip().upper()


def normalise_phone(value: str) -> str:
    """Digits only, the country code (+86, 0086, or 86 before an 11-digit mobile) removed.

    After an explicit +86 or 0086 a landline's area code gets its domestic trunk 0 back, so
    "+86 10 1234 5678" and "010-1234-5678" index alike.
    """
    text = unicodedata.normalize("NFKC", value).strip()
    digits = "".join(c for c in text if c.isdigit() and c.isascii())
    if text.startswith("+86") or digits.startswith("0086"):
        rest = digits[2:] if text.startswith("+86") else digits[4:]
        is_mobile = len(rest) == 11 and rest.startswith("1")
        return rest if is_mobile or not rest or rest.startswith("0") else "0" + rest
    if len(digits) == 13 and digits.startswith("861"):
        return digits[2:]
    return digits


_NORMALISERS: dict[str, Callable[[str], str]] = {
    RESIDENT_ID: normalise_resident_id,
    PHONE: normalise_phone,
}


def encrypt_field(master: MasterKey, kind: str, value: str) -> str:
    """A compact base64url token sealing ``value``; ``kind`` is authenticated with it.

    Token bytes: version (1) || master fingerprint (4) || nonce (12) || SM4-GCM ciphertext+tag.
    A fresh nonce each time, so equal values give different tokens; search uses
    :func:`blind_index`.
    """
    _check_kind(kind)
    header = bytes([TOKEN_VERSION]) + master.fingerprint
    nonce = aead.new_nonce()
    sealed = aead.seal(
        master.field_encryption_key, nonce, value.encode("utf-8"), _aad(header, kind)
    )
    return base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")


def decrypt_field(master: MasterKey, kind: str, token: str) -> str:
    """The value sealed in ``token``; ``CryptoError`` if any character changed or kind differs."""
    _check_kind(kind)
    raw = _decode(token)
    if len(raw) < _HEADER_BYTES + aead.TAG_BYTES:
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is too short")
    if raw[0] != TOKEN_VERSION:
        raise CryptoError("CRYPTO-VERSION-UNKNOWN", f"token version {raw[0]} is unknown")
    header, nonce = raw[: 1 + FINGERPRINT_BYTES], raw[1 + FINGERPRINT_BYTES : _HEADER_BYTES]
    if not hmac.compare_digest(header[1:], master.fingerprint):
        raise CryptoError(
            "CRYPTO-MASTER-KEY-MISMATCH", "the token was sealed under another master secret"
        )
    plain = aead.open_sealed(
        master.field_encryption_key, nonce, raw[_HEADER_BYTES:], _aad(header, kind)
    )
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:  # authenticated, so only a sealing bug gets here
        raise CryptoError("CRYPTO-TOKEN-INVALID", "the sealed value is not UTF-8") from None


def blind_index(master: MasterKey, kind: str, value: str) -> str:
    """HMAC-SM3 (hex) of the normalised value under the index key: equal values, equal indexes.

    The kind is part of the MAC input, so a phone number and an ID with the same digits differ.
    """
    normalised = _NORMALISERS[_check_kind(kind)](value)
    message = kind.encode("ascii") + b"\x00" + normalised.encode("utf-8")
    return hmac_sm3(master.blind_index_key, message).hex()


def mask_resident_id(value: str | None) -> str:
    """First 4 and last 4 characters of an 18- or 15-character ID; anything else all stars.

    Never raises: it is used in lists and log lines, where a bad value must not stop the page.
    """
    text = normalise_resident_id(value) if isinstance(value, str) else ""
    if len(text) < 15:
        return "*" * len(text)
    return text[:4] + "*" * (len(text) - 8) + text[-4:]


def mask_phone(value: str | None) -> str:
    """First 3 and last 4 digits of an 11-digit (or longer) number; anything shorter all stars."""
    digits = normalise_phone(value) if isinstance(value, str) else ""
    if len(digits) < 11:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def _check_kind(kind: str) -> str:
    if kind not in _NORMALISERS:
        raise CryptoError(
            "CRYPTO-KIND-UNKNOWN", f"field kind {kind!r} is not one of {sorted(_NORMALISERS)}"
        )
    return kind


def _aad(header: bytes, kind: str) -> bytes:
    return b"carenet/v1/field\x00" + header + kind.encode("ascii")


def _decode(token: str) -> bytes:
    """Strict base64url without padding: one text per byte string, so no character is inert."""
    if not isinstance(token, str) or not _BASE64URL.fullmatch(token):
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is not base64url")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is not canonical base64url")
    return raw
