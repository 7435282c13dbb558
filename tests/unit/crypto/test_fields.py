"""Resident IDs and phone numbers at rest (PRIV-1): SM4-GCM tokens, blind indexes, masks."""

from __future__ import annotations

import base64
import secrets

import pytest

from carenet.crypto.errors import CryptoError
from carenet.crypto.fields import (
    PHONE,
    RESIDENT_ID,
    blind_index,
    decrypt_field,
    encrypt_field,
    mask_phone,
    mask_resident_id,
    normalise_phone,
    normalise_resident_id,
)
from carenet.crypto.keys import MasterKey

ID = "11010519491231002X"  # ID-1's valid example
OTHER_ID = "440524188001010014"


def a_master() -> MasterKey:
    return MasterKey.from_secret(secrets.token_urlsafe(32))


@pytest.fixture
def master() -> MasterKey:
    return a_master()


@pytest.mark.parametrize(
    ("kind", "value"),
    [(RESIDENT_ID, ID), (PHONE, "13812345678"), (PHONE, ""), (PHONE, "电话 +86 138-1234-5678")],
    ids=["resident-id", "phone", "empty", "unicode"],
)
def test_a_field_round_trips(master, kind, value):
    assert decrypt_field(master, kind, encrypt_field(master, kind, value)) == value


def test_a_token_is_compact_base64url_without_padding(master):
    token = encrypt_field(master, PHONE, "13812345678")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert raw[0] == 1 and raw[1:5] == master.fingerprint
    assert len(raw) == 1 + 4 + 12 + 11 + 16


def test_the_same_value_encrypts_to_different_tokens(master):
    assert encrypt_field(master, RESIDENT_ID, ID) != encrypt_field(master, RESIDENT_ID, ID)


def test_changing_any_byte_of_a_token_fails_with_a_crypto_error(master):
    raw = base64.urlsafe_b64decode(encrypt_field(master, RESIDENT_ID, ID) + "==")
    seen = set()
    for i in range(len(raw)):
        tampered = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        token = base64.urlsafe_b64encode(tampered).rstrip(b"=").decode()
        with pytest.raises(CryptoError) as err:
            decrypt_field(master, RESIDENT_ID, token)
        seen.add(err.value.code)
    assert seen == {"CRYPTO-VERSION-UNKNOWN", "CRYPTO-MASTER-KEY-MISMATCH", "CRYPTO-TOKEN-INVALID"}


def test_changing_any_character_of_a_token_fails_with_a_crypto_error(master):
    # The last character carries unused bits: strict decoding makes it count as well.
    token = encrypt_field(master, PHONE, "13812345678")
    for i, ch in enumerate(token):
        for other in {"A", "B", "-"} - {ch}:
            with pytest.raises(CryptoError):
                decrypt_field(master, PHONE, token[:i] + other + token[i + 1 :])


@pytest.mark.parametrize(
    "token", ["", "a", "AQ", "not base64!", "AQ==", "AQID+/"], ids=lambda t: repr(t)
)
def test_a_malformed_token_is_refused(master, token):
    with pytest.raises(CryptoError) as err:
        decrypt_field(master, PHONE, token)
    assert err.value.code == "CRYPTO-TOKEN-MALFORMED"


def test_a_truncated_token_is_refused(master):
    token = encrypt_field(master, PHONE, "13812345678")
    with pytest.raises(CryptoError):
        decrypt_field(master, PHONE, token[:-3])


def test_a_resident_id_token_does_not_decrypt_as_a_phone(master):
    token = encrypt_field(master, RESIDENT_ID, ID)
    with pytest.raises(CryptoError) as err:
        decrypt_field(master, PHONE, token)
    assert err.value.code == "CRYPTO-TOKEN-INVALID"


def test_a_phone_token_does_not_decrypt_as_a_resident_id(master):
    token = encrypt_field(master, PHONE, "13812345678")
    with pytest.raises(CryptoError) as err:
        decrypt_field(master, RESIDENT_ID, token)
    assert err.value.code == "CRYPTO-TOKEN-INVALID"


def test_a_token_sealed_under_another_master_secret_is_named_as_such(master):
    token = encrypt_field(a_master(), PHONE, "13812345678")
    with pytest.raises(CryptoError) as err:
        decrypt_field(master, PHONE, token)
    assert err.value.code == "CRYPTO-MASTER-KEY-MISMATCH"


@pytest.mark.parametrize("kind", ["", "Phone", "resident_id", "insurance-number"])
def test_an_unknown_kind_is_refused_everywhere(master, kind):
    for call in (
        lambda: encrypt_field(master, kind, "x"),
        lambda: decrypt_field(master, kind, "x"),
        lambda: blind_index(master, kind, "x"),
    ):
        with pytest.raises(CryptoError) as err:
            call()
        assert err.value.code == "CRYPTO-KIND-UNKNOWN"


def test_the_blind_index_is_stable_for_one_master_secret():
    secret = secrets.token_urlsafe(32)
    one = blind_index(MasterKey.from_secret(secret), RESIDENT_ID, ID)
    two = blind_index(MasterKey.from_secret(secret), RESIDENT_ID, ID)
    assert one == two and len(one) == 64


def test_the_blind_index_depends_on_the_key():
    assert blind_index(a_master(), RESIDENT_ID, ID) != blind_index(a_master(), RESIDENT_ID, ID)


def test_the_blind_index_depends_on_the_value_and_the_kind(master):
    assert blind_index(master, RESIDENT_ID, ID) != blind_index(master, RESIDENT_ID, OTHER_ID)
    assert blind_index(master, PHONE, "13812345678") != blind_index(
        master, RESIDENT_ID, "13812345678"
    )


@pytest.mark.parametrize(
    "variant",
    [ID, " 11010519491231002x ", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ"],
)
def test_spellings_of_one_resident_id_share_a_blind_index(master, variant):
    assert blind_index(master, RESIDENT_ID, variant) == blind_index(master, RESIDENT_ID, ID)


@pytest.mark.parametrize(
    "variant",
    [
        "13812345678",
        "+86 138 1234 5678",
        "+8613812345678",
        "8613812345678",
        "0086-138-1234-5678",
        "138-1234-5678",
        "(138) 1234 5678",
        "１３８１２３４５６７８",
    ],
)
def test_spellings_of_one_mobile_number_share_a_blind_index(master, variant):
    assert blind_index(master, PHONE, variant) == blind_index(master, PHONE, "13812345678")


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("+86 10 1234 5678", "01012345678"),
        ("0086 21 1234 5678", "02112345678"),
        ("010-1234-5678", "01012345678"),
        ("861234567890", "861234567890"),  # 12 digits: not a +86 mobile, kept as written
        ("86123456", "86123456"),  # a local number that starts with 86
        ("+86", ""),
        ("no digits", ""),
    ],
)
def test_phone_normalisation_keeps_landlines_and_short_numbers_apart(value, normalised):
    assert normalise_phone(value) == normalised


def test_resident_id_normalisation_trims_and_uppercases():
    assert normalise_resident_id("\t11010519491231002x \n") == ID


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("11010519491231002X", "1101**********002X"),
        ("440524188001010014", "4405**********0014"),
        (" 11010519491231002x ", "1101**********002X"),
        ("110105491231002", "1101*******1002"),  # the old 15-digit form
        ("11010549123100", "**************"),  # 14: too short to show any part
        ("1234", "****"),
        ("", ""),
        (None, ""),
    ],
)
def test_a_resident_id_is_masked_to_its_first_and_last_four(value, masked):
    assert mask_resident_id(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "138****5678"),
        ("010-1234-5678", "010****5678"),
        ("1381234567", "**********"),  # 10 digits: too short to show any part
        ("12345", "*****"),
        ("abc", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_a_phone_number_is_masked_to_its_first_three_and_last_four(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize("value", [123, b"13812345678", ["1"], object()])
def test_masking_never_raises_on_a_value_that_is_not_text(value):
    assert mask_resident_id(value) == ""
    assert mask_phone(value) == ""
