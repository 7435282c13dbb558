"""SM3 against the GB/T 32905-2016 test vectors."""

from carenet.crypto.hashing import hmac_sm3, sm3_hex


def test_sm3_of_abc_matches_the_standard_example_1():
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_sm3_of_the_512_bit_message_matches_the_standard_example_2():
    assert (
        sm3_hex(b"abcd" * 16) == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )


def test_hmac_sm3_depends_on_the_key():
    assert hmac_sm3(b"k1", b"data") != hmac_sm3(b"k2", b"data")
    assert hmac_sm3(b"k1", b"data") == hmac_sm3(b"k1", b"data")
    assert len(hmac_sm3(b"k1", b"data")) == 32
