"""TOTP step matching (window, format) and argon2id password hashing (verify, rehash)."""

from __future__ import annotations

import pyotp

from carenet.access.passwords import hash_password, needs_rehash, verify_password
from carenet.access.totp import code_at, matching_step, new_secret, provisioning_uri

from .fakes import FAST_POLICY, T0

SECRET = new_secret()
STEP = T0 // 1000 // 30


def test_a_code_matches_its_own_step_and_one_step_either_side() -> None:
    for offset in (-1, 0, 1):
        code = code_at(SECRET, T0 + offset * 30_000, FAST_POLICY)
        assert matching_step(SECRET, code, T0, FAST_POLICY) == STEP + offset


def test_a_code_two_steps_away_does_not_match() -> None:
    for offset in (-2, 2):
        code = code_at(SECRET, T0 + offset * 30_000, FAST_POLICY)
        if code not in {code_at(SECRET, T0 + o * 30_000, FAST_POLICY) for o in (-1, 0, 1)}:
            assert matching_step(SECRET, code, T0, FAST_POLICY) is None


def test_malformed_codes_do_not_match() -> None:
    code = code_at(SECRET, T0, FAST_POLICY)
    assert matching_step(SECRET, code + "0", T0, FAST_POLICY) is None
    assert matching_step(SECRET, "abcdef", T0, FAST_POLICY) is None
    assert matching_step(SECRET, "", T0, FAST_POLICY) is None
    assert matching_step(SECRET, f" {code} ", T0, FAST_POLICY) == STEP


def test_codes_agree_with_pyotp_and_the_uri_names_the_issuer() -> None:
    assert code_at(SECRET, T0, FAST_POLICY) == pyotp.TOTP(SECRET).at(T0 // 1000)
    uri = provisioning_uri(SECRET, "dr.wang", FAST_POLICY)
    assert uri.startswith("otpauth://totp/CareNet:dr.wang?") and f"secret={SECRET}" in uri


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    stored = hash_password("correct horse 1", FAST_POLICY)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse 1", FAST_POLICY)
    assert not verify_password(stored, "correct horse 2", FAST_POLICY)
    assert not verify_password("not a hash", "correct horse 1", FAST_POLICY)


def test_no_stored_hash_never_verifies() -> None:
    assert not verify_password(None, "carenet-dummy-password-for-timing", FAST_POLICY)


def test_changed_parameters_ask_for_a_rehash() -> None:
    from dataclasses import replace

    stored = hash_password("correct horse 1", FAST_POLICY)
    assert not needs_rehash(stored, FAST_POLICY)
    assert needs_rehash(stored, replace(FAST_POLICY, argon2_time_cost=2))
