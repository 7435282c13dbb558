"""The key hierarchy: HKDF-SM3 purpose keys and SM4-GCM wrapping of private keys."""

from __future__ import annotations

import secrets

import pytest

from carenet.crypto import aead
from carenet.crypto.errors import CryptoError
from carenet.crypto.hashing import hmac_sm3
from carenet.crypto.keys import MasterKey


def a_master() -> MasterKey:
    return MasterKey.from_secret(secrets.token_urlsafe(32))


def test_the_same_secret_derives_the_same_keys():
    secret = secrets.token_urlsafe(32)
    one, two = MasterKey.from_secret(secret), MasterKey.from_secret(secret)
    assert one.fingerprint == two.fingerprint
    assert one.field_encryption_key == two.field_encryption_key
    assert one.blind_index_key == two.blind_index_key


def test_each_purpose_gets_its_own_key():
    master = a_master()
    assert len(master.field_encryption_key) == aead.KEY_BYTES
    assert len(master.blind_index_key) == 32
    assert master.field_encryption_key != master.blind_index_key[: aead.KEY_BYTES]


def test_a_different_secret_derives_different_keys():
    one, two = a_master(), a_master()
    assert one.fingerprint != two.fingerprint
    assert one.field_encryption_key != two.field_encryption_key


def hkdf_sm3_by_hand(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with HMAC-SM3, independent of the library's HKDF."""
    prk = hmac_sm3(salt, secret)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac_sm3(prk, block + info + bytes([counter]))
        out, counter = out + block, counter + 1
    return out[:length]


def test_derivation_is_hkdf_over_sm3_with_the_documented_salt_and_labels():
    secret = secrets.token_urlsafe(32)
    master = MasterKey.from_secret(secret)
    salt = b"carenet/master-key/v1"
    assert master.fingerprint == hkdf_sm3_by_hand(
        secret.encode(), salt, b"carenet/v1/fingerprint", 4
    )
    assert master.field_encryption_key == hkdf_sm3_by_hand(
        secret.encode(), salt, b"carenet/v1/field-encryption", 16
    )
    assert master.blind_index_key == hkdf_sm3_by_hand(
        secret.encode(), salt, b"carenet/v1/blind-index", 32
    )


@pytest.mark.parametrize("secret", ["", "   "])
def test_an_empty_master_secret_is_refused(secret: str):
    with pytest.raises(CryptoError) as err:
        MasterKey.from_secret(secret)
    assert err.value.code == "CRYPTO-MASTER-SECRET-EMPTY"


def test_repr_shows_the_fingerprint_and_no_key():
    master = a_master()
    text = repr(master)
    assert text == f"MasterKey(fingerprint={master.fingerprint.hex()})"
    assert master.field_encryption_key.hex() not in text


def test_a_wrapped_key_unwraps_to_the_same_bytes():
    master, key = a_master(), secrets.token_bytes(32)
    assert master.unwrap(master.wrap(key, b"Practitioner/1"), b"Practitioner/1") == key


def test_wrapping_twice_gives_different_blobs():
    master, key = a_master(), secrets.token_bytes(32)
    assert master.wrap(key, b"a") != master.wrap(key, b"a")


def test_an_empty_key_round_trips():
    master = a_master()
    assert master.unwrap(master.wrap(b"", b"a"), b"a") == b""


def test_changing_any_byte_of_a_wrapped_key_fails_to_unwrap():
    master = a_master()
    blob = master.wrap(secrets.token_bytes(32), b"Practitioner/1")
    codes = set()
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises(CryptoError) as err:
            master.unwrap(tampered, b"Practitioner/1")
        codes.add(err.value.code)
    assert codes == {
        "CRYPTO-VERSION-UNKNOWN",
        "CRYPTO-MASTER-KEY-MISMATCH",
        "CRYPTO-TOKEN-INVALID",
    }


def test_a_truncated_wrapped_key_is_malformed():
    master = a_master()
    blob = master.wrap(b"k", b"a")
    with pytest.raises(CryptoError) as err:
        master.unwrap(blob[:20], b"a")
    assert err.value.code == "CRYPTO-TOKEN-MALFORMED"


def test_a_wrapped_key_bound_to_one_owner_does_not_unwrap_for_another():
    master = a_master()
    blob = master.wrap(secrets.token_bytes(32), b"Practitioner/1")
    with pytest.raises(CryptoError) as err:
        master.unwrap(blob, b"Practitioner/2")
    assert err.value.code == "CRYPTO-TOKEN-INVALID"


def test_a_key_wrapped_under_another_master_secret_is_named_as_such():
    blob = a_master().wrap(secrets.token_bytes(32), b"a")
    with pytest.raises(CryptoError) as err:
        a_master().unwrap(blob, b"a")
    assert err.value.code == "CRYPTO-MASTER-KEY-MISMATCH"


def test_sm4_gcm_refuses_a_key_of_the_wrong_size():
    with pytest.raises(CryptoError) as err:
        aead.seal(b"k" * 32, aead.new_nonce(), b"x", b"")
    assert err.value.code == "CRYPTO-KEY-INVALID"


def test_sm4_gcm_matches_the_rfc_8998_test_vector():
    # RFC 8998 Appendix A.1 (SM4-GCM): key, IV, AAD, plaintext -> ciphertext || tag.
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    iv = bytes.fromhex("00001234567800000000ABCD")
    aad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plain = bytes.fromhex(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    )
    expected = bytes.fromhex(
        "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
        "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        "83DE3541E4C2B58177E065A9BF7B62EC"
    )
    assert aead.seal(key, iv, plain, aad) == expected
    assert aead.open_sealed(key, iv, expected, aad) == plain
