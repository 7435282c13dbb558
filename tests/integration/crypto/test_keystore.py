"""The signing-key store on both databases: one active key per signer, retired keys kept,
private keys only wrapped at rest (SIG-1, SIG-2)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from itertools import count

import pytest
from sqlalchemy import Engine, select

from carenet.crypto import keystore, signing
from carenet.crypto.errors import CryptoError
from carenet.crypto.keys import MasterKey
from carenet.store.engine import build_engine
from carenet.store.schema import metadata

DOCTOR = "Practitioner/doc-1"
PHARMACIST = "Practitioner/pharm-1"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = build_engine(db_url)
    metadata.create_all(eng, tables=[keystore.signing_keys])
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.from_secret(secrets.token_urlsafe(32))


def clock_from(start: int) -> Callable[[], int]:
    ticks = count(start, 1000)
    return lambda: next(ticks)


def test_issue_stores_the_key_and_makes_it_active(engine, master):
    with engine.begin() as conn:
        key = keystore.issue_key(conn, master, DOCTOR, clock=lambda: 1_700_000_000_000)
    with engine.connect() as conn:
        row = keystore.active_key(conn, DOCTOR)
        assert row is not None
        assert (row.key_id, row.public_hex, row.status, row.created, row.retired) == (
            key.key_id,
            key.public_hex,
            "active",
            1_700_000_000_000,
            None,
        )
        assert row.wrapped_private == key.wrapped_private_key
        assert keystore.public_key(conn, DOCTOR, key.key_id) == key.public_hex
        assert keystore.active_key(conn, PHARMACIST) is None


def test_issuing_again_retires_the_previous_key_which_still_answers(engine, master):
    clock = clock_from(1_000)
    with engine.begin() as conn:
        first = keystore.issue_key(conn, master, DOCTOR, clock=clock)
    with engine.begin() as conn:
        second = keystore.issue_key(conn, master, DOCTOR, clock=clock)
    with engine.connect() as conn:
        assert [(k.key_id, k.status, k.retired) for k in keystore.keys_of(conn, DOCTOR)] == [
            (first.key_id, "retired", 2_000),
            (second.key_id, "active", None),
        ]
        active = keystore.active_key(conn, DOCTOR)
        assert active is not None and active.key_id == second.key_id
        # Old signatures must still verify: the retired public key stays reachable.
        assert keystore.public_key(conn, DOCTOR, first.key_id) == first.public_hex


def test_one_active_key_per_signer_is_enforced_by_the_database(engine, master):
    with engine.begin() as conn:
        keystore.issue_key(conn, master, DOCTOR)
    other = signing.issue_signing_key(master, DOCTOR)
    with pytest.raises(Exception, match="(?i)unique|duplicate"), engine.begin() as conn:
        conn.execute(
            keystore.signing_keys.insert().values(
                key_id=other.key_id,
                signer_ref=DOCTOR,
                public_hex=other.public_hex,
                wrapped_private=other.wrapped_private_key,
                status="active",
                created=1,
            )
        )


def test_public_key_is_looked_up_by_signer_and_key_id_together(engine, master):
    with engine.begin() as conn:
        doctor = keystore.issue_key(conn, master, DOCTOR)
        keystore.issue_key(conn, master, PHARMACIST)
    with engine.connect() as conn:
        assert keystore.public_key(conn, PHARMACIST, doctor.key_id) is None
        assert keystore.public_key(conn, DOCTOR, "sm2-" + "0" * 32) is None


def test_ensure_key_returns_the_active_key_or_issues_one(engine, master):
    with engine.begin() as conn:
        made = keystore.ensure_key(conn, master, PHARMACIST)
        again = keystore.ensure_key(conn, master, PHARMACIST)
    assert made == again
    with engine.connect() as conn:
        assert len(keystore.keys_of(conn, PHARMACIST)) == 1


def test_nothing_is_written_unless_the_caller_commits(engine, master):
    with engine.connect() as conn:
        keystore.issue_key(conn, master, DOCTOR)
        conn.rollback()
    with engine.connect() as conn:
        assert keystore.active_key(conn, DOCTOR) is None


def test_private_keys_are_only_stored_wrapped(engine, master):
    with engine.begin() as conn:
        key = keystore.issue_key(conn, master, DOCTOR)
    with engine.connect() as conn:
        stored = conn.execute(
            select(keystore.signing_keys.c.wrapped_private).where(
                keystore.signing_keys.c.key_id == key.key_id
            )
        ).scalar_one()
    stored = bytes(stored)
    material = master.unwrap(stored, signing._wrap_aad(DOCTOR, key.key_id))
    private = material[:32]
    assert private not in stored
    assert private.hex().encode() not in stored
    assert private.hex().upper().encode() not in stored
    assert private.hex() not in stored.hex()
    # Bound to the signer: under another signer's name the blob does not unwrap.
    with pytest.raises(CryptoError):
        master.unwrap(stored, signing._wrap_aad(PHARMACIST, key.key_id))
    # And useless without the master secret.
    with pytest.raises(CryptoError):
        MasterKey.from_secret(secrets.token_urlsafe(32)).unwrap(
            stored, signing._wrap_aad(DOCTOR, key.key_id)
        )
