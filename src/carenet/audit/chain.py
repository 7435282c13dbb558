"""Appending audit events to N parallel hash chains, in the caller's transaction.

Each chain has a head row (chain_id, seq, last_hash). An append locks its chain's head (SELECT
... FOR UPDATE on PostgreSQL; SQLite writers are serialised by BEGIN IMMEDIATE anyway), writes
the event with seq = head.seq + 1 and hash = SM3(head.last_hash || canonical event), and moves
the head. The lock is held until the caller commits, so callers append at the very end of their
unit of work; a rollback takes the event and the head move back together, leaving no gap.

All events of one transaction go to one chain: locking two heads in two orders from two
transactions could deadlock, and one lock per transaction is also the cheapest.

On PostgreSQL each thread keeps a chain of its own (no other thread of its process takes it)
and remembers the head it last wrote. It appends in one round trip: the head moves only if it
is still the one remembered (``UPDATE ... WHERE seq = :known AND last_hash = :known``, which
waits for a writer holding the row and then sees its commit), and the event is inserted only if
the head moved. If it did not (another process wrote the chain, or this thread's last write was
rolled back), the append takes the lock-and-read path above, and the thread moves to another
chain for its next transaction, so that processes which collided spread out.
"""

from __future__ import annotations

import random
import threading
import weakref
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from carenet.audit.record import GENESIS_HASH, AuditRecord, CanonicalTemplate, chain_hash
from carenet.audit.schema import audit_chain_heads, audit_events
from carenet.store.direct import Prebuilt

DEFAULT_CHAINS = 8
_TX_CHAIN_KEY = "carenet.audit.chain"

# Built once: constructing and cache-keying statements was a third of an append's cost.
# Prebuilt: run on the driver's cursor on PostgreSQL (store/direct.py).
_LOCK_HEAD = Prebuilt(
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
# One event's columns as parameters e_<column>, typed: psycopg's dialect renders each as
# $n::TYPE (a bare parameter in a SELECT list would be text); no CAST to the column's type,
# which would truncate a value too long for it instead of failing.
_EVENT = {c.name: bindparam(f"e_{c.name}", type_=c.type) for c in audit_events.columns}
# PostgreSQL: the event insert and the head move in one statement, one round trip fewer while
# the head is locked.
_INSERT_AND_MOVE_HEAD = Prebuilt(
    _MOVE_HEAD.add_cte(insert(audit_events).values(_EVENT).cte("new_event"))
)

# PostgreSQL, the head known: move it if it is still that one, and insert the event only then.
_MOVE_KNOWN_HEAD = (
    _MOVE_HEAD.where(
        audit_chain_heads.c.seq == bindparam("known_seq"),
        audit_chain_heads.c.last_hash == bindparam("known_hash"),
    )
    .returning(audit_chain_heads.c.chain_id)
    .cte("moved")
)
_APPEND_IF_HEAD_KNOWN = Prebuilt(
    insert(audit_events)
    .add_cte(_MOVE_KNOWN_HEAD)
    .from_select(list(_EVENT), select(*_EVENT.values()).select_from(_MOVE_KNOWN_HEAD))
    # SQLAlchemy keeps an INSERT's row count only when asked to.
    .execution_options(preserve_rowcount=True)
)
_RUN_MOVE_HEAD = Prebuilt(_MOVE_HEAD)  # _MOVE_HEAD itself is the base of the two above


class _Claim:
    """A thread's hold on a chain, released when dropped (a thread-local value is dropped when
    its thread ends) or when the thread leaves the chain."""

    def __init__(self, chain: int) -> None:
        self.chain = chain
        self.release = weakref.finalize(self, _release, chain)


class _ThreadChain(threading.local):
    """This thread's chain and the heads it last wrote or read (PostgreSQL). ``chain`` -1:
    leave the claimed chain at the next transaction."""

    chain: int | None = None
    claim: _Claim | None = None

    def __init__(self) -> None:
        self.heads: dict[int, tuple[int, str]] = {}


_thread = _ThreadChain()
_taken: Counter[int] = Counter()  # how many threads of this process hold each chain
_taken_lock = threading.Lock()


def _own_chain(chains: int) -> int:
    """This thread's chain, taking the least held one (no other thread of this process holds
    it while there are more chains than threads), never the one it is leaving."""
    if _thread.chain is not None and 0 <= _thread.chain < chains:
        return _thread.chain
    leaving = _thread.claim.chain if _thread.claim is not None else None
    with _taken_lock:
        candidates = [c for c in range(chains) if c != leaving] or [leaving or 0]
        fewest = min(_taken[c] for c in candidates)
        chain = random.choice([c for c in candidates if _taken[c] == fewest])  # noqa: S311
        _taken[chain] += 1
    if _thread.claim is not None:
        _thread.claim.release()  # after choosing, so that the chain left is not chosen again
    _thread.claim = _Claim(chain)
    _thread.chain = chain
    return chain


def _release(chain: int) -> None:
    with _taken_lock:
        _taken[chain] -= 1
        if _taken[chain] <= 0:
            del _taken[chain]


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


def append(
    conn: Connection,
    event: AuditRecord,
    *,
    chains: int = DEFAULT_CHAINS,
    chain: int | None = None,
) -> None:
    """Append one event in the transaction open on ``conn``. Never commits."""
    append_many(conn, [event], chains=chains, chain=chain)


def append_many(
    conn: Connection,
    events: Sequence[AuditRecord],
    *,
    chains: int = DEFAULT_CHAINS,
    chain: int | None = None,
) -> None:
    """Append events, in order, to one chain in the transaction open on ``conn``. Never
    commits. ``chain``: that chain, if the transaction has not appended elsewhere yet (tools
    and tests); by default this thread's chain on PostgreSQL, the request's on SQLite."""
    if not events:
        return
    postgres = conn.dialect.name == "postgresql"
    chain_id = _chain_of_transaction(conn, events[0].request_id, chains, postgres, chain)
    # Everything that does not depend on the head is prepared before the lock is taken.
    prepared = [(e.row_values(), CanonicalTemplate(_hashed(e, chain_id))) for e in events]

    known = _thread.heads.pop(chain_id, None) if postgres else None
    if known is not None and len(prepared) == 1:
        rows, move = _link(prepared, chain_id, *known)
        moved = _APPEND_IF_HEAD_KNOWN.run(
            conn,
            {**_event_params(rows[0], move), "known_seq": known[0], "known_hash": known[1]},
        )
        if moved.rowcount == 1:
            _thread.heads[chain_id] = (move["new_seq"], move["new_hash"])
            return
        # Another writer moved the head: append as below, and if that writer shares this
        # thread's own chain, leave it after this transaction (which stays on it: one chain
        # per transaction).
        if _thread.chain == chain_id:
            _thread.chain = -1

    rows, move = _link(prepared, chain_id, *_lock_head(conn, chain_id))
    if postgres:
        # Remembered before the commit: if the transaction rolls back, the next append here
        # finds the head unmoved, and takes this path again.
        _thread.heads[chain_id] = (move["new_seq"], move["new_hash"])
    if len(rows) == 1 and postgres:
        _INSERT_AND_MOVE_HEAD.run(conn, _event_params(rows[0], move))
        return
    # One row goes as a plain execute: the executemany path costs several times more.
    conn.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
    _RUN_MOVE_HEAD.run(conn, move)


def _event_params(row: dict[str, Any], move: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a one-statement append: the event's (``_EVENT``) and the head move's."""
    return {**{f"e_{k}": v for k, v in row.items()}, **move}


def _link(
    prepared: Sequence[tuple[dict[str, Any], CanonicalTemplate]],
    chain_id: int,
    seq: int,
    last_hash: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of the prepared events after the head (seq, last_hash), and the head move."""
    rows: list[dict[str, Any]] = []
    for values, template in prepared:
        seq += 1
        digest = chain_hash(last_hash, template.render(seq))
        rows.append(
            {**values, "chain_id": chain_id, "seq": seq, "prev_hash": last_hash, "hash": digest}
        )
        last_hash = digest
    return rows, {"cid": chain_id, "new_seq": seq, "new_hash": last_hash}


def _hashed(event: AuditRecord, chain_id: int) -> dict[str, Any]:
    fields = event.fields()
    fields["chain_id"] = chain_id
    return fields


def _chain_of_transaction(
    conn: Connection, request_id: str | None, chains: int, postgres: bool, chain: int | None
) -> int:
    """The chain this transaction already appends to, else ``chain``, else this thread's chain
    (PostgreSQL) or the request's (SQLite, whose writers are serialised whatever the chain)."""
    tx = conn.get_transaction()
    if tx is None:
        raise RuntimeError("audit append needs an open transaction (the action's own)")
    if chain is not None and not 0 <= chain < chains:
        raise ValueError(f"audit chain {chain} is not one of 0..{chains - 1}")
    memo = conn.info.get(_TX_CHAIN_KEY)
    if memo is not None and memo[0]() is tx:
        if chain is not None and chain != memo[1]:
            raise ValueError("all audit events of one transaction go to one chain")
        return int(memo[1])
    if chain is not None:
        chain_id = chain
    elif postgres:
        chain_id = _own_chain(chains)
    else:
        chain_id = chain_for(request_id, chains)
    # conn.info outlives the transaction (it belongs to the pooled DBAPI connection); the weak
    # reference makes the memo expire with the transaction.
    conn.info[_TX_CHAIN_KEY] = (weakref.ref(tx), chain_id)
    return chain_id


def _lock_head(conn: Connection, chain_id: int) -> tuple[int, str]:
    row = _LOCK_HEAD.run(conn, {"cid": chain_id}).first()
    if row is None:
        _create_head(conn, chain_id)
        row = _LOCK_HEAD.run(conn, {"cid": chain_id}).one()
    return int(row.seq), str(row.last_hash)


def _create_head(conn: Connection, chain_id: int) -> None:
    values = {"chain_id": chain_id, "seq": 0, "last_hash": GENESIS_HASH}
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(audit_chain_heads).values(values).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite_insert(audit_chain_heads).values(values).on_conflict_do_nothing())
    else:  # pragma: no cover - only the two supported stores
        raise RuntimeError(f"unsupported database {conn.dialect.name}")
