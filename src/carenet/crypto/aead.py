"""SM4-GCM authenticated encryption (GB/T 32907 block cipher, GCM per GB/T 36624 / RFC 8998).

SIG-2 (RULES.md): SM4 for encryption in systems under 等级保护 (密码法 Art 27). OpenSSL provides
SM4-GCM and ``cryptography`` exposes it through ``Cipher(algorithms.SM4(key), modes.GCM(nonce))``;
it has no one-shot AEAD class for SM4, hence this small wrapper. No I/O.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from carenet.crypto.errors import CryptoError

ALGORITHM = "SM4-GCM"
KEY_BYTES = 16  # SM4 has one key size: 128 bits
NONCE_BYTES = 12  # the GCM nonce size that needs no GHASH derivation (NIST SP 800-38D)
TAG_BYTES = 16


def new_nonce() -> bytes:
    """A fresh random 96-bit nonce; 2^32 messages per key keep the collision risk below 2^-32."""
    return secrets.token_bytes(NONCE_BYTES)


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext`` (and ``aad``); return ciphertext || 16-byte tag."""
    _check(key, nonce)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return body + enc.tag


def open_sealed(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of ``sealed``; ``CryptoError`` if any byte of it, the nonce or the aad changed."""
    _check(key, nonce)
    if len(sealed) < TAG_BYTES:
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", "the ciphertext is shorter than its tag")
    body, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise CryptoError(
            "CRYPTO-TOKEN-INVALID",
            "authentication failed: the ciphertext, its context or the key is not the one sealed",
        ) from None


def _check(key: bytes, nonce: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise CryptoError("CRYPTO-KEY-INVALID", f"an SM4 key has {KEY_BYTES} bytes")
    if len(nonce) != NONCE_BYTES:
        raise CryptoError("CRYPTO-TOKEN-MALFORMED", f"a nonce has {NONCE_BYTES} bytes")
