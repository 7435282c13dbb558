"""The crypto-backed FieldProtector and the signed browser values (no I/O)."""

from __future__ import annotations

import pytest

from carenet.access.protector import CryptoFieldProtector
from carenet.access.sessions import CSRF, LOGIN_TICKET, SESSION, Signer
from carenet.crypto import fields
from carenet.crypto.errors import CryptoError
from carenet.crypto.keys import MasterKey

SECRET = "unit-test-master-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone", "13812345678"),
        ("resident_id", "11010519491231002X"),
        ("totp_secret", "JBSWY3DPEHPK3PXP"),
        ("notify", '{"code":"123456"}'),
        ("sms", "13812345678"),
    ],
)
def test_every_field_round_trips_and_is_bound_to_its_field(field: str, value: str) -> None:
    p = CryptoFieldProtector.from_secret(SECRET)
    token = p.encrypt(value, field=field)
    assert value not in token
    assert p.decrypt(token, field=field) == value
    assert p.encrypt(value, field=field) != token  # a fresh nonce each time
    other = "otp_code" if field != "otp_code" else "login"
    with pytest.raises(CryptoError):
        p.decrypt(token, field=other)


def test_phone_and_resident_id_use_the_crypto_fields_format_and_normalisation() -> None:
    master = MasterKey.from_secret(SECRET)
    p = CryptoFieldProtector(master)
    assert fields.decrypt_field(master, fields.PHONE, p.encrypt("13812345678", field="phone"))
    assert p.blind_index("+86 138 1234 5678", field="phone") == fields.blind_index(
        master, fields.PHONE, "13812345678"
    )
    assert p.mask("11010519491231002X", field="resident_id") == "1101**********002X"
    assert p.mask("13812345678", field="phone") == "138****5678"
    assert p.mask("secret", field="totp_secret") == "******"


def test_blind_indexes_are_deterministic_keyed_and_separated_by_field() -> None:
    p = CryptoFieldProtector.from_secret(SECRET)
    q = CryptoFieldProtector.from_secret(SECRET + "-other")
    assert p.blind_index("abc", field="login") == p.blind_index("abc", field="login")
    assert p.blind_index("abc", field="login") != p.blind_index("abc", field="otp_code")
    assert p.blind_index("abc", field="login") != q.blind_index("abc", field="login")
    with pytest.raises(CryptoError):
        q.decrypt(p.encrypt("x", field="login"), field="login")
    with pytest.raises(CryptoError):
        p.decrypt("not base64 !", field="login")


def test_signed_values_expire_and_are_bound_to_their_purpose() -> None:
    s = Signer.from_secret(SECRET)
    value = s.sign(SESSION, {"sub": "a1"}, now_ms=1000, ttl_seconds=10)
    assert s.unsign(SESSION, value, now_ms=10_999) == {"sub": "a1", "exp": 11_000}
    assert s.unsign(SESSION, value, now_ms=11_000) is None
    assert s.unsign(LOGIN_TICKET, value, now_ms=2000) is None
    assert s.unsign(CSRF, value, now_ms=2000) is None
    body, mac = value.split(".")
    assert s.unsign(SESSION, body + "." + mac[:-2] + "AA", now_ms=2000) is None
    assert s.unsign(SESSION, "x" + value, now_ms=2000) is None
    assert Signer.from_secret(SECRET + "x").unsign(SESSION, value, now_ms=2000) is None
    for junk in (None, "", "a.b.c", "....", "a" * 5000, "!!.!!"):
        assert s.unsign(SESSION, junk, now_ms=2000) is None
