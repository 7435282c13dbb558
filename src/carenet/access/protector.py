"""The real FieldProtector (``access/ports.py``) over ``carenet.crypto``: SM4-GCM encryption and
HMAC-SM3 blind indexes under keys derived from the master secret.

Phone numbers and resident IDs go through ``carenet.crypto.fields`` unchanged (same tokens, same
normalised blind indexes, same masks). Every other field kind the identity code protects (TOTP
secrets, one-time code hashes, throttle keys, notification parameters) uses the same token
layout and keys with the field name bound into the AEAD associated data and into the MAC input,
so a value of one field can never be decrypted or matched as another.
"""

from __future__ import annotations

import base64
import hmac

from carenet.crypto import aead, fields
from carenet.crypto.errors import CryptoError
from carenet.crypto.hashing import hmac_sm3
from carenet.crypto.keys import FINGERPRINT_BYTES, MasterKey

#: Identity field names → crypto field kinds that have their own normalisation and masking.
_KINDS = {"phone": fields.PHONE, "resident_id": fields.RESIDENT_ID}
_TOKEN_VERSION = 1
_HEADER_BYTES = 1 + FINGERPRINT_BYTES + aead.NONCE_BYTES


class CryptoFieldProtector:
    """``FieldProtector`` backed by the node's MasterKey."""

    def __init__(self, master: MasterKey) -> None:
        self._master = master

    @classmethod
    def from_secret(cls, master_secret: str) -> CryptoFieldProtector:
        return cls(MasterKey.from_secret(master_secret))

    def __repr__(self) -> str:
        return f"CryptoFieldProtector({self._master!r})"

    def encrypt(self, plaintext: str, *, field: str) -> str:
        kind = _KINDS.get(field)
        if kind is not None:
            return fields.encrypt_field(self._master, kind, plaintext)
        header = bytes([_TOKEN_VERSION]) + self._master.fingerprint
        nonce = aead.new_nonce()
        sealed = aead.seal(
            self._master.field_encryption_key,
            nonce,
            plaintext.encode("utf-8"),
            _aad(header, field),
        )
        return base64.urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")

    def decrypt(self, ciphertext: str, *, field: str) -> str:
        kind = _KINDS.get(field)
        if kind is not None:
            return fields.decrypt_field(self._master, kind, ciphertext)
        try:
            raw = base64.urlsafe_b64decode(ciphertext + "=" * (-len(ciphertext) % 4))
        except (ValueError, TypeError):
            raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is not base64url") from None
        if len(raw) < _HEADER_BYTES + aead.TAG_BYTES or raw[0] != _TOKEN_VERSION:
            raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the token is too short or unknown")
        header = raw[: 1 + FINGERPRINT_BYTES]
        if not hmac.compare_digest(header[1:], self._master.fingerprint):
            raise CryptoError(
                "CRYPTO-MASTER-KEY-MISMATCH", "the token was sealed under another master secret"
            )
        nonce = raw[1 + FINGERPRINT_BYTES : _HEADER_BYTES]
        plain = aead.open_sealed(
            self._master.field_encryption_key, nonce, raw[_HEADER_BYTES:], _aad(header, field)
        )
        return plain.decode("utf-8")

    def blind_index(self, value: str, *, field: str) -> str:
        kind = _KINDS.get(field)
        if kind is not None:
            return fields.blind_index(self._master, kind, value)
        message = b"carenet/v1/opaque-field\x00" + field.encode("utf-8") + b"\x00"
        return hmac_sm3(self._master.blind_index_key, message + value.encode("utf-8")).hex()

    def mask(self, value: str, *, field: str) -> str:
        if field == "resident_id":
            return fields.mask_resident_id(value)
        if field in ("phone", "sms"):
            return fields.mask_phone(value)
        return "*" * len(value)


def _aad(header: bytes, field: str) -> bytes:
    return b"carenet/v1/opaque-field\x00" + header + field.encode("utf-8")
