"""The key hierarchy: one master secret (from Settings) and the purpose keys derived from it.

SIG-1 (RULES.md, 电子签名法 Art 13): a doctor's signing key must be controlled only by them, so
private keys are stored only wrapped under a key the database does not hold. SIG-2 (密码法 Art
27): HKDF runs over SM3 and wrapping uses SM4-GCM. docs/crypto.md explains the choices. No I/O.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carenet.crypto import aead
from carenet.crypto.errors import CryptoError

KDF = "HKDF-SM3"
WRAP_ALGORITHM = aead.ALGORITHM
WRAP_VERSION = 1
FINGERPRINT_BYTES = 4
_HEADER_BYTES = 1 + FINGERPRINT_BYTES + aead.NONCE_BYTES
# A fixed salt only separates CareNet's derivations from any other use of the same secret; the
# secret itself carries the entropy (Settings refuses a short or default one in production).
_SALT = b"carenet/master-key/v1"
_INFO_WRAP = b"carenet/v1/private-key-wrapping"
_INFO_FIELD = b"carenet/v1/field-encryption"
_INFO_INDEX = b"carenet/v1/blind-index"
_INFO_FINGERPRINT = b"carenet/v1/fingerprint"
_WRAP_CONTEXT = b"carenet/v1/wrapped-private-key\x00"


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SM3(), length=length, salt=_SALT, info=info).derive(secret)


class MasterKey:
    """Purpose keys derived from the server's master secret; repr never shows them.

    ``fingerprint`` names the master secret (4 bytes of an HKDF output, not of the secret) so a
    blob or token sealed under an older secret is recognised as such during a rotation.
    """

    __slots__ = ("_wrap_key", "_field_key", "_index_key", "fingerprint")

    def __init__(self, wrap_key: bytes, field_key: bytes, index_key: bytes, fingerprint: bytes):
        self._wrap_key = wrap_key
        self._field_key = field_key
        self._index_key = index_key
        self.fingerprint = fingerprint

    @classmethod
    def from_secret(cls, settings_master_secret: str) -> MasterKey:
        """Derive every purpose key from ``Settings.master_secret`` (HKDF-SM3, RFC 5869)."""
        if not settings_master_secret or not settings_master_secret.strip():
            raise CryptoError("CRYPTO-MASTER-SECRET-EMPTY", "the master secret is empty")
        secret = settings_master_secret.encode("utf-8")
        return cls(
            wrap_key=_derive(secret, _INFO_WRAP, aead.KEY_BYTES),
            field_key=_derive(secret, _INFO_FIELD, aead.KEY_BYTES),
            index_key=_derive(secret, _INFO_INDEX, 32),
            fingerprint=_derive(secret, _INFO_FINGERPRINT, FINGERPRINT_BYTES),
        )

    def __repr__(self) -> str:
        return f"MasterKey(fingerprint={self.fingerprint.hex()})"

    @property
    def field_encryption_key(self) -> bytes:
        """The SM4 key for resident IDs and phone numbers (``carenet.crypto.fields`` only)."""
        return self._field_key

    @property
    def blind_index_key(self) -> bytes:
        """The HMAC-SM3 key for exact-match search indexes (``carenet.crypto.fields`` only)."""
        return self._index_key

    def wrap(self, private_key_bytes: bytes, aad: bytes) -> bytes:
        """Seal a private key under the wrapping key, bound to ``aad`` (say, its owner and key id).

        Blob: version (1 byte) || master fingerprint (4) || nonce (12) || SM4-GCM ciphertext+tag.
        The header is authenticated too, so no byte of the blob can change unnoticed.
        """
        header = bytes([WRAP_VERSION]) + self.fingerprint
        nonce = aead.new_nonce()
        sealed = aead.seal(self._wrap_key, nonce, private_key_bytes, _WRAP_CONTEXT + header + aad)
        return header + nonce + sealed

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """The private key in ``blob``; ``CryptoError`` if it was changed, or sealed elsewhere."""
        if len(blob) < _HEADER_BYTES + aead.TAG_BYTES:
            raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the wrapped key is too short")
        if blob[0] != WRAP_VERSION:
            raise CryptoError("CRYPTO-VERSION-UNKNOWN", f"wrapped-key version {blob[0]} is unknown")
        header, nonce = blob[: 1 + FINGERPRINT_BYTES], blob[1 + FINGERPRINT_BYTES : _HEADER_BYTES]
        if not hmac.compare_digest(header[1:], self.fingerprint):
            raise CryptoError(
                "CRYPTO-MASTER-KEY-MISMATCH", "the key was wrapped under another master secret"
            )
        return aead.open_sealed(
            self._wrap_key, nonce, blob[_HEADER_BYTES:], _WRAP_CONTEXT + header + aad
        )
