"""Where signing keys live: one row per SM2 key, private part wrapped, public part in clear.

SIG-1 (RULES.md, 电子签名法 Art 13): a doctor's or pharmacist's signing key is controlled only by
them, so the private key is stored only as the SM4-GCM blob from
:func:`carenet.crypto.signing.issue_signing_key` (wrapped under a key derived from the master
secret, bound to the signer and key id); the database never holds it in clear. SIG-2: SM2/SM4.
ONL-5: the keys behind the doctor's and the pharmacist's e-signatures on a prescription.

Each signer has at most one ``active`` key, the one new signatures use (a partial unique index
enforces it). Issuing a new key retires the previous one; a retired key stays here, so every
signature it made still verifies (:func:`public_key` answers for retired keys too).

Functions work on the caller's connection and never commit: the key is written in the same
unit of work as whatever is being signed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    LargeBinary,
    Row,
    String,
    Table,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from carenet.crypto.errors import CryptoError
from carenet.crypto.keys import MasterKey
from carenet.crypto.signing import SigningKey, issue_signing_key
from carenet.store.schema import metadata

KeyStatus = Literal["active", "retired"]


def now_ms() -> int:
    return int(time.time() * 1000)


signing_keys = Table(
    "signing_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),  # signing.key_id_of(public): "sm2-<32 hex>"
    Column("signer_ref", String(140), nullable=False),  # "Practitioner/<id>"
    Column("public_hex", String(130), nullable=False),  # uncompressed point, 04 || x || y
    Column("wrapped_private", LargeBinary, nullable=False),  # keys.MasterKey.wrap blob
    Column("status", String(8), nullable=False),  # active | retired
    Column("created", BigInteger, nullable=False),  # ms since the epoch, UTC
    Column("retired", BigInteger, nullable=True),
)
Index("ix_signing_keys_signer_ref", signing_keys.c.signer_ref)
# One active key per signer, even under concurrent issuing (both stores have partial indexes).
Index(
    "uq_signing_keys_active_signer",
    signing_keys.c.signer_ref,
    unique=True,
    sqlite_where=signing_keys.c.status == "active",
    postgresql_where=signing_keys.c.status == "active",
)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One row of ``signing_keys``."""

    key_id: str
    signer_ref: str
    public_hex: str
    wrapped_private: bytes
    status: KeyStatus
    created: int
    retired: int | None

    def as_signing_key(self) -> SigningKey:
        return SigningKey(
            key_id=self.key_id,
            public_hex=self.public_hex,
            wrapped_private_key=self.wrapped_private,
        )


def issue_key(
    conn: Connection,
    master: MasterKey,
    signer_ref: str,
    *,
    clock: Callable[[], int] = now_ms,
) -> SigningKey:
    """A new SM2 key for ``signer_ref``, stored wrapped; the signer's previous key is retired.

    Retired keys are kept, so signatures made with them still verify (SIG-1).
    """
    _lock_signer(conn, signer_ref)
    return _issue(conn, master, signer_ref, clock())


def active_key(conn: Connection, signer_ref: str) -> StoredKey | None:
    """The key new signatures of ``signer_ref`` use, or None if they have none."""
    row = conn.execute(
        select(signing_keys).where(
            signing_keys.c.signer_ref == signer_ref, signing_keys.c.status == "active"
        )
    ).first()
    return None if row is None else _stored(row)


def public_key(conn: Connection, signer_ref: str, key_id: str) -> str | None:
    """The public key ``key_id`` of ``signer_ref``, active or retired; None if there is none.

    Looked up by both, so a Provenance whose signer was edited finds no key (docs/crypto.md).
    """
    value = conn.execute(
        select(signing_keys.c.public_hex).where(
            signing_keys.c.key_id == key_id, signing_keys.c.signer_ref == signer_ref
        )
    ).scalar_one_or_none()
    return None if value is None else str(value)


def ensure_key(
    conn: Connection,
    master: MasterKey,
    signer_ref: str,
    *,
    clock: Callable[[], int] = now_ms,
) -> SigningKey:
    """The active key of ``signer_ref``, issuing one on first use."""
    current = active_key(conn, signer_ref)
    if current is not None:
        return current.as_signing_key()
    _lock_signer(conn, signer_ref)
    current = active_key(conn, signer_ref)  # another transaction may have issued one meanwhile
    if current is not None:
        return current.as_signing_key()
    return _issue(conn, master, signer_ref, clock())


def keys_of(conn: Connection, signer_ref: str) -> list[StoredKey]:
    """Every key of ``signer_ref``, oldest first (for administration and tests)."""
    rows = conn.execute(
        select(signing_keys)
        .where(signing_keys.c.signer_ref == signer_ref)
        .order_by(signing_keys.c.created, signing_keys.c.key_id)
    ).all()
    return [_stored(r) for r in rows]


def _issue(conn: Connection, master: MasterKey, signer_ref: str, at: int) -> SigningKey:
    key = issue_signing_key(master, signer_ref)
    try:
        with conn.begin_nested():
            conn.execute(
                update(signing_keys)
                .where(signing_keys.c.signer_ref == signer_ref, signing_keys.c.status == "active")
                .values(status="retired", retired=at)
            )
            conn.execute(
                insert(signing_keys).values(
                    key_id=key.key_id,
                    signer_ref=signer_ref,
                    public_hex=key.public_hex,
                    wrapped_private=key.wrapped_private_key,
                    status="active",
                    created=at,
                    retired=None,
                )
            )
    except IntegrityError as exc:  # pragma: no cover - only without the signer lock
        raise CryptoError(
            "SIG-KEY-CONFLICT", f"a signing key for {signer_ref} was issued concurrently"
        ) from exc
    return key


def _lock_signer(conn: Connection, signer_ref: str) -> None:
    # Serialise issuing per signer on PostgreSQL (SQLite serialises writers anyway), so two
    # concurrent first signatures do not both issue a key.
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"signing-key:{signer_ref}"}
        )


def _stored(row: Row[Any]) -> StoredKey:
    m = row._mapping
    return StoredKey(
        key_id=m["key_id"],
        signer_ref=m["signer_ref"],
        public_hex=m["public_hex"],
        wrapped_private=bytes(m["wrapped_private"]),
        status=m["status"],
        created=m["created"],
        retired=m["retired"],
    )
