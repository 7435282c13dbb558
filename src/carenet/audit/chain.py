"""Appending audit events to N parallel hash chains, in the caller's transaction.

Each chain has a head row (chain_id, seq, last_hash). An append locks its chain's head (SELECT
... FOR UPDATE on PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE anyway), writes
the event with seq = head.seq + 1 and hash = SM3(head.last_hash || canonical event), and moves
the head. The lock is held until the caller commits, so callers append at the very end of their
unit of work; a rollback takes the event and the head move back together, leaving no gap.

All events of one transaction go to one chain: locking two heads in two orders from two
transactions could deadlock, and one lock per transaction is also the cheapest.
"""

from __future__ import annotations

import random
import weakref
import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from carenet.audit.record import GENESIS_HASH, AuditRecord, CanonicalTemplate, chain_hash
from carenet.audit.schema import audit_chain_heads, audit_events

DEFAULT_CHAINS = 8
_TX_CHAIN_KEY = "carenet.audit.chain"

# Built once: constructing and cache-keying statements was a third of an append's cost.
_LOCK_HEAD = (
    select(audit_chain_heads.c.seq, audit_chain_heads.c.last_hash)
    .where(audit_chain_heads.c.chain_id == bindparam("cid"))
    .with_for_update()  # rendered on PostgreSQL only; SQLite holds the database write lock
)
_INSERT_EVENT = insert(audit_events)
_MOVE_HEAD = (
    update(audit_chain_heads)
    .where(audit_chain_heads.c.chain_id == bindparam("cid"))
    .values(seq=bindparam("new_seq"), last_hash=bindparam("new_hash"))
)
# PostgreSQL: the event insert and the head move in one statement, one round trip fewer while
# the head is locked.
_INSERT_AND_MOVE_HEAD = _MOVE_HEAD.add_cte(
    insert(audit_events)
    .values({c.name: bindparam(f"e_{c.name}", type_=c.type) for c in audit_events.columns})
    .cte("new_event")
)


def chain_for(request_id: str | None, chains: int = DEFAULT_CHAINS) -> int:
    """The chain of a request: a stable hash of its id (so a retried request lands on the same
    chain), or a random chain when there is no id."""
    if chains < 1:
        raise ValueError("there must be at least one audit chain")
    if not request_id:
        return random.randrange(chains)  # noqa: S311 - load spreading, not security
    return zlib.crc32(request_id.encode("utf-8", "replace")) % chains


def ensure_chains(conn: Connection, chains: int = DEFAULT_CHAINS) -> None:
    """Create the head rows of chains 0..chains-1 that do not exist yet (idempotent).

    Optional: append creates a missing head itself; calling this at migration or start-up
    saves the first append of each chain one statement.
    """
    for chain_id in range(chains):
        _create_head(conn, chain_id)


def append(conn: Connection, event: AuditRecord, *, chains: int = DEFAULT_CHAINS) -> None:
    """Append one event in the transaction open on ``conn``. Never commits."""
    append_many(conn, [event], chains=chains)


def append_many(
    conn: Connection, events: Sequence[AuditRecord], *, chains: int = DEFAULT_CHAINS
) -> None:
    """Append events, in order, to one chain in the transaction open on ``conn``: one lock, one
    multi-row insert, one head update. Never commits."""
    if not events:
        return
    chain_id = _chain_of_transaction(conn, events[0].request_id, chains)
    # Everything that does not depend on the head is prepared before the lock is taken.
    prepared = [(e.row_values(), CanonicalTemplate(_hashed(e, chain_id))) for e in events]

    seq, last_hash = _lock_head(conn, chain_id)
    rows: list[dict[str, Any]] = []
    for values, template in prepared:
        seq += 1
        digest = chain_hash(last_hash, template.render(seq))
        rows.append(
            {**values, "chain_id": chain_id, "seq": seq, "prev_hash": last_hash, "hash": digest}
        )
        last_hash = digest
    move = {"cid": chain_id, "new_seq": seq, "new_hash": last_hash}
    if len(rows) == 1 and conn.dialect.name == "postgresql":
        conn.execute(_INSERT_AND_MOVE_HEAD, {**{f"e_{k}": v for k, v in rows[0].items()}, **move})
        return
    # One row goes as a plain execute: the executemany path costs several times more.
    conn.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
    conn.execute(_MOVE_HEAD, move)


def _hashed(event: AuditRecord, chain_id: int) -> dict[str, Any]:
    fields = event.fields()
    fields["chain_id"] = chain_id
    return fields


def _chain_of_transaction(conn: Connection, request_id: str | None, chains: int) -> int:
    """The chain this transaction already appends to, or the request's chain."""
    tx = conn.get_transaction()
    if tx is None:
        raise RuntimeError("audit append needs an open transaction (the action's own)")
    memo = conn.info.get(_TX_CHAIN_KEY)
    if memo is not None and memo[0]() is tx:
        return int(memo[1])
    chain_id = chain_for(request_id, chains)
    # conn.info outlives the transaction (it belongs to the pooled DBAPI connection); the weak
    # reference makes the memo expire with the transaction.
    conn.info[_TX_CHAIN_KEY] = (weakref.ref(tx), chain_id)
    return chain_id


def _lock_head(conn: Connection, chain_id: int) -> tuple[int, str]:
    row = conn.execute(_LOCK_HEAD, {"cid": chain_id}).first()
    if row is None:
        _create_head(conn, chain_id)
        row = conn.execute(_LOCK_HEAD, {"cid": chain_id}).one()
    return int(row.seq), str(row.last_hash)


def _create_head(conn: Connection, chain_id: int) -> None:
    values = {"chain_id": chain_id, "seq": 0, "last_hash": GENESIS_HASH}
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(audit_chain_heads).values(values).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite_insert(audit_chain_heads).values(values).on_conflict_do_nothing())
    else:  # pragma: no cover - only the two supported stores
        raise RuntimeError(f"unsupported database {conn.dialect.name}")
