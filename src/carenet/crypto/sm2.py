"""SM2 key pairs and signatures (GB/T 32918.2-2016) with SM3 and the Z_A user-ID preprocessing.

SIG-2 (RULES.md, 密码法 Art 27): SM2 for signatures. ``cryptography`` has no SM2, so the curve
arithmetic comes from gmssl (pure Python); this module keeps the security-critical parts to
itself: the nonce k comes from ``secrets`` (gmssl's own helper uses ``random``), keys and
signatures are range- and curve-checked, Z_A and e = SM3(Z_A || M) run on OpenSSL's SM3, and
signatures are DER ``SEQUENCE { r INTEGER, s INTEGER }`` as GM/T 0009-2012 encodes them, which
OpenSSL and the national CA toolkits read. No I/O.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gmssl.sm2 import CryptSM2

from carenet.crypto.errors import CryptoError
from carenet.crypto.hashing import sm3

# GM/T 0009-2012 §10: the user ID signers use when nothing else is agreed (OpenSSL's default too).
DEFAULT_USER_ID = b"1234567812345678"


@dataclass(frozen=True, slots=True)
class Curve:
    """Short-Weierstrass curve y^2 = x^3 + ax + b over F_p with base point G of prime order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def gmssl_table(self) -> dict[str, str]:
        return {
            "p": f"{self.p:064x}",
            "a": f"{self.a:064x}",
            "b": f"{self.b:064x}",
            "g": f"{self.gx:064x}{self.gy:064x}",
            "n": f"{self.n:064x}",
        }

    def contains(self, x: int, y: int) -> bool:
        return (
            0 <= x < self.p
            and 0 <= y < self.p
            and (y * y - x**3 - self.a * x - self.b) % self.p == 0
        )


# GB/T 32918.5-2017: the recommended 256-bit curve (sm2p256v1).
SM2P256V1 = Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


def generate_keypair() -> tuple[str, str]:
    """A fresh key pair: (private key d as 64 hex digits, public key as 04 || x || y in hex)."""
    d = secrets.randbelow(SM2P256V1.n - 2) + 1  # d in [1, n-2]: (1 + d) must be invertible
    private_hex = f"{d:064x}"
    return private_hex, public_key_of(private_hex)


def public_key_of(private_hex: str) -> str:
    """The public key P = dG of ``private_hex``, uncompressed (04 || x || y, 130 hex digits)."""
    d = _private_int(private_hex, SM2P256V1)
    xy = _crypt(SM2P256V1)._kg(d, SM2P256V1.gmssl_table()["g"])
    return "04" + xy


def sign(
    private_hex: str, public_hex: str, data: bytes, *, user_id: bytes = DEFAULT_USER_ID
) -> bytes:
    """The DER-encoded SM2 signature of ``data``: e = SM3(Z_A || data), then (r, s) with random k.

    ``public_hex`` must be the signer's own public key: Z_A binds it (and ``user_id``) into e.
    """
    curve = SM2P256V1
    d = _private_int(private_hex, curve)
    x, y = _public_point(public_hex, curve)
    e = _digest(x, y, data, user_id, curve)
    while True:  # a retry happens with probability ~2^-255
        rs = _sign_digest(d, e, secrets.randbelow(curve.n - 1) + 1, curve)
        if rs is not None:
            return encode_dss_signature(*rs)


def verify(
    public_hex: str, data: bytes, signature: bytes, *, user_id: bytes = DEFAULT_USER_ID
) -> bool:
    """True when ``signature`` (DER) is ``data``'s SM2 signature by ``public_hex``'s key.

    A malformed or non-canonical signature is simply not valid (False); a malformed public key is
    a configuration fault and raises ``CryptoError``.
    """
    curve = SM2P256V1
    x, y = _public_point(public_hex, curve)
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return False
    if encode_dss_signature(r, s) != signature:  # one encoding per signature: no malleability
        return False
    return _verify_digest(x, y, _digest(x, y, data, user_id, curve), r, s, curve)


def za(x: int, y: int, user_id: bytes, curve: Curve = SM2P256V1) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A) (GB/T 32918.2 §5.5)."""
    if len(user_id) >= 8192:  # ENTL is two bytes of bit length
        raise CryptoError("CRYPTO-USER-ID-INVALID", "an SM2 user ID has fewer than 8192 bytes")
    parts = [curve.a, curve.b, curve.gx, curve.gy, x, y]
    return sm3(
        (len(user_id) * 8).to_bytes(2, "big")
        + user_id
        + b"".join(v.to_bytes(32, "big") for v in parts)
    )


def _digest(x: int, y: int, data: bytes, user_id: bytes, curve: Curve) -> bytes:
    return sm3(za(x, y, user_id, curve) + data)


def _sign_digest(d: int, e: bytes, k: int, curve: Curve) -> tuple[int, int] | None:
    """(r, s) for the message digest e and nonce k, or None when the standard says pick another k."""
    out = _crypt(curve, private_hex=f"{d:064x}").sign(e, f"{k:064x}")
    if out is None:
        return None
    return int(out[:64], 16), int(out[64:], 16)


def _verify_digest(x: int, y: int, e: bytes, r: int, s: int, curve: Curve) -> bool:
    if not (1 <= r < curve.n and 1 <= s < curve.n):  # GB/T 32918.2 §7.1 B1, B2
        return False
    try:
        return bool(_crypt(curve, public_xy=f"{x:064x}{y:064x}").verify(f"{r:064x}{s:064x}", e))
    except (TypeError, ValueError):  # gmssl hits the point at infinity: not a valid signature
        return False


def _crypt(curve: Curve, private_hex: str = "", public_xy: str = "") -> CryptSM2:
    crypt = CryptSM2(private_key=private_hex, public_key="", ecc_table=curve.gmssl_table())
    # Set after construction: gmssl's constructor strips a leading "04" with str.lstrip, which
    # also eats an x coordinate's own leading 0 and 4 digits.
    crypt.public_key = public_xy
    return crypt


def _private_int(private_hex: str, curve: Curve) -> int:
    try:
        d = int(private_hex, 16) if len(private_hex) == 64 else 0
    except ValueError:
        d = 0
    if not 1 <= d <= curve.n - 2:
        raise CryptoError("CRYPTO-KEY-INVALID", "an SM2 private key is 64 hex digits in [1, n-2]")
    return d


def _public_point(public_hex: str, curve: Curve) -> tuple[int, int]:
    body = public_hex[2:] if len(public_hex) == 130 and public_hex[:2] == "04" else public_hex
    try:
        x, y = (int(body[:64], 16), int(body[64:], 16)) if len(body) == 128 else (-1, -1)
    except ValueError:
        x, y = -1, -1
    if not curve.contains(x, y):
        raise CryptoError(
            "CRYPTO-KEY-INVALID", "an SM2 public key is 04 || x || y (hex) on the SM2 curve"
        )
    return x, y
