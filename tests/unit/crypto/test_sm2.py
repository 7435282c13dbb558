"""SM2 signatures against GB/T 32918.2 Annex A, OpenSSL, and the ways a signature can be wrong."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from gmssl.sm2 import CryptSM2, default_ecc_table

from carenet.crypto import sm2
from carenet.crypto.errors import CryptoError

# GB/T 32918.2-2016 Annex A (also draft-shen-sm2-ecdsa-02 and OpenSSL's sm2_internal_test.c):
# a 256-bit test curve, user ID ALICE123@YAHOO.COM, message "message digest", fixed nonce k.
ANNEX_A_CURVE = sm2.Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
ANNEX_A_D = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
ANNEX_A_X = 0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A
ANNEX_A_Y = 0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857
ANNEX_A_ID = b"ALICE123@YAHOO.COM"
ANNEX_A_K = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
ANNEX_A_ZA = "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
ANNEX_A_E = "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76"
ANNEX_A_R = 0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1
ANNEX_A_S = 0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7

# Made with OpenSSL 3.0.19: `openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt
# distid:1234567812345678` on the recommended curve; only the public key is kept.
OPENSSL_PUBLIC = (
    "04c6fa29f6e91e7289ca29d5102b3b29f504f24bf1735535bc86ebd1954652ba81"
    "21fb2969dee508e161095edaf60dacd324d771d2683e89113a6097ebcf26e753"
)
OPENSSL_MESSAGE = b'{"resourceType":"Patient","id":"x"}'
OPENSSL_SIGNATURE = bytes.fromhex(
    "3046022100835d8711d672a1832a1487c079a71a9435b827274fca5623c63c563b36b0ce64"
    "02210080bbeb7a28c315ca646958944cfa158464c0f903a6a33c8bf0e2e370e367ae47"
)


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return sm2.generate_keypair()


def test_the_recommended_curve_matches_gmssl_and_the_standard():
    table = sm2.SM2P256V1.gmssl_table()
    assert {k: int(v, 16) for k, v in table.items()} == {
        k: int(v, 16) for k, v in default_ecc_table.items()
    }
    assert sm2.SM2P256V1.contains(sm2.SM2P256V1.gx, sm2.SM2P256V1.gy)


def test_annex_a_public_key_za_digest_and_signature_match_the_standard():
    c = ANNEX_A_CURVE
    xy = sm2._crypt(c)._kg(ANNEX_A_D, c.gmssl_table()["g"])
    assert (int(xy[:64], 16), int(xy[64:], 16)) == (ANNEX_A_X, ANNEX_A_Y)
    assert sm2.za(ANNEX_A_X, ANNEX_A_Y, ANNEX_A_ID, c).hex().upper() == ANNEX_A_ZA
    e = sm2._digest(ANNEX_A_X, ANNEX_A_Y, b"message digest", ANNEX_A_ID, c)
    assert e.hex().upper() == ANNEX_A_E
    assert sm2._sign_digest(ANNEX_A_D, e, ANNEX_A_K, c) == (ANNEX_A_R, ANNEX_A_S)
    assert sm2._verify_digest(ANNEX_A_X, ANNEX_A_Y, e, ANNEX_A_R, ANNEX_A_S, c)


def test_a_signature_made_by_openssl_verifies():
    assert sm2.verify(OPENSSL_PUBLIC, OPENSSL_MESSAGE, OPENSSL_SIGNATURE)


def test_an_openssl_signature_does_not_verify_under_another_user_id():
    assert not sm2.verify(OPENSSL_PUBLIC, OPENSSL_MESSAGE, OPENSSL_SIGNATURE, user_id=b"")


def test_our_digest_equals_gmssls_own_za_preprocessing_for_the_default_id(keypair):
    private_hex, public_hex = keypair
    x, y = int(public_hex[2:66], 16), int(public_hex[66:], 16)
    ours = sm2._digest(x, y, b"abc", sm2.DEFAULT_USER_ID, sm2.SM2P256V1)
    gmssl = CryptSM2(private_key=private_hex, public_key="")
    gmssl.public_key = public_hex[2:]
    assert ours.hex() == gmssl._sm3_z(b"abc")


def test_a_generated_key_pair_is_a_private_scalar_and_its_point():
    private_hex, public_hex = sm2.generate_keypair()
    assert len(private_hex) == 64 and len(public_hex) == 130 and public_hex[:2] == "04"
    assert 1 <= int(private_hex, 16) <= sm2.SM2P256V1.n - 2
    assert sm2.public_key_of(private_hex) == public_hex


def test_two_generated_key_pairs_differ():
    assert sm2.generate_keypair()[0] != sm2.generate_keypair()[0]


def test_a_signature_verifies_and_is_der(keypair):
    private_hex, public_hex = keypair
    data = secrets.token_bytes(100)
    signature = sm2.sign(private_hex, public_hex, data)
    r, s = decode_dss_signature(signature)
    assert encode_dss_signature(r, s) == signature
    assert sm2.verify(public_hex, data, signature)


def test_the_public_key_verifies_with_or_without_the_04_prefix(keypair):
    private_hex, public_hex = keypair
    signature = sm2.sign(private_hex, public_hex[2:], b"data")
    assert sm2.verify(public_hex, b"data", signature)
    assert sm2.verify(public_hex[2:], b"data", signature)


def test_signing_twice_uses_a_fresh_nonce(keypair):
    private_hex, public_hex = keypair
    assert sm2.sign(private_hex, public_hex, b"d") != sm2.sign(private_hex, public_hex, b"d")


def test_a_signature_does_not_verify_for_changed_data(keypair):
    private_hex, public_hex = keypair
    signature = sm2.sign(private_hex, public_hex, b"amount=100")
    assert not sm2.verify(public_hex, b"amount=900", signature)


def test_a_signature_does_not_verify_with_another_key(keypair):
    private_hex, public_hex = keypair
    signature = sm2.sign(private_hex, public_hex, b"data")
    assert not sm2.verify(sm2.generate_keypair()[1], b"data", signature)


def test_a_signature_with_any_byte_changed_does_not_verify(keypair):
    private_hex, public_hex = keypair
    signature = sm2.sign(private_hex, public_hex, b"data")
    for i in range(0, len(signature), 7):  # every 7th byte: each costs a verification
        tampered = signature[:i] + bytes([signature[i] ^ 0x80]) + signature[i + 1 :]
        assert not sm2.verify(public_hex, b"data", tampered), i


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"\x30\x00",
        b"not der at all",
        encode_dss_signature(0, 1),
        encode_dss_signature(1, 0),
        encode_dss_signature(sm2.SM2P256V1.n, 1),
        encode_dss_signature(1, sm2.SM2P256V1.n),
    ],
    ids=["empty", "empty-sequence", "garbage", "r-zero", "s-zero", "r-is-n", "s-is-n"],
)
def test_a_malformed_or_out_of_range_signature_is_not_valid(keypair, signature: bytes):
    assert sm2.verify(keypair[1], b"data", signature) is False


def test_a_signature_with_a_trailing_byte_is_not_valid(keypair):
    private_hex, public_hex = keypair
    signature = sm2.sign(private_hex, public_hex, b"data")
    assert not sm2.verify(public_hex, b"data", signature + b"\x00")


@pytest.mark.parametrize(
    "public_hex",
    ["", "04", "zz" * 65, "04" + "00" * 64, "05" + "11" * 64, "04" + "11" * 64],
    ids=["empty", "prefix-only", "not-hex", "origin", "bad-prefix", "off-curve"],
)
def test_a_public_key_not_on_the_curve_is_refused(public_hex: str):
    with pytest.raises(CryptoError) as err:
        sm2.verify(public_hex, b"data", OPENSSL_SIGNATURE)
    assert err.value.code == "CRYPTO-KEY-INVALID"


@pytest.mark.parametrize(
    "private_hex",
    ["", "00" * 32, f"{sm2.SM2P256V1.n - 1:064x}", "zz" * 32, "01" * 31],
    ids=["empty", "zero", "n-minus-1", "not-hex", "short"],
)
def test_a_private_key_outside_one_to_n_minus_2_is_refused(private_hex: str):
    with pytest.raises(CryptoError) as err:
        sm2.public_key_of(private_hex)
    assert err.value.code == "CRYPTO-KEY-INVALID"


def test_the_largest_private_key_n_minus_2_is_accepted():
    private_hex = f"{sm2.SM2P256V1.n - 2:064x}"
    public_hex = sm2.public_key_of(private_hex)
    assert sm2.verify(public_hex, b"d", sm2.sign(private_hex, public_hex, b"d"))


def test_a_public_key_whose_x_starts_with_04_survives_gmssls_prefix_stripping():
    # gmssl's constructor lstrip("04")s the key; find a key whose x begins with 0 or 4.
    while True:
        private_hex, public_hex = sm2.generate_keypair()
        if public_hex[2] in "04":
            break
    assert sm2.verify(public_hex, b"d", sm2.sign(private_hex, public_hex, b"d"))


def test_a_user_id_of_8192_bytes_is_refused():
    with pytest.raises(CryptoError) as err:
        sm2.za(sm2.SM2P256V1.gx, sm2.SM2P256V1.gy, b"x" * 8192)
    assert err.value.code == "CRYPTO-USER-ID-INVALID"
