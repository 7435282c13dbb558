"""Verifying the audit chains: walks every chain in seq order, streaming, and names the first
altered, deleted or inserted event of each.

How each kind of tampering shows (see docs/audit.md):

- altered: the event's hash is not SM3(prev_hash || its content), while its prev_hash still
  links to the event before it; or the head's hash does not match the last event.
- deleted: a gap in seq; or an event that is neither self-consistent nor linked to the one
  before it (events removed and the rest renumbered); or the head counts more events than the
  chain holds (cut off the end).
- inserted: a duplicate seq; an event whose neighbour links past it (the next event's prev_hash
  is the previous event's hash, or the same prev_hash as its own); an event beyond the head.

The walk runs without a snapshot across statements (it may take minutes on a large chain and
must not block appends): heads are read before the events and again after, so events that
commit during the walk are not mistaken for insertions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from carenet.audit.record import GENESIS_HASH, row_hash
from carenet.audit.schema import audit_chain_heads, audit_events

ProgressCallback = Callable[[int, int], None]  # (events checked, events expected)

PROGRESS_EVERY = 1000
_BATCH = 2000


class Tampering(StrEnum):
    ALTERED = "altered"
    DELETED = "deleted"
    INSERTED = "inserted"


@dataclass(frozen=True)
class Problem:
    """The first problem found in one chain: which event (chain_id, seq), what kind, and why."""

    chain_id: int
    seq: int
    kind: Tampering
    message: str


@dataclass
class VerifyReport:
    chains: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, chain_id: int) -> Problem | None:
        return next((p for p in self.problems if p.chain_id == chain_id), None)


@dataclass(frozen=True)
class _Head:
    seq: int
    last_hash: str


def _heads(conn: Connection) -> dict[int, _Head]:
    rows = conn.execute(
        select(audit_chain_heads.c.chain_id, audit_chain_heads.c.seq, audit_chain_heads.c.last_hash)
    )
    return {int(r.chain_id): _Head(int(r.seq), str(r.last_hash)) for r in rows}


def verify(
    conn: Connection,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = _BATCH,
) -> VerifyReport:
    """Check every chain; the report holds at most one problem per chain, the first one.

    ``progress(done, total)`` is called every PROGRESS_EVERY events and at the end; total is the
    number of events the heads account for (known without counting the table).
    """
    before = _heads(conn)
    total = sum(h.seq for h in before.values())
    report = VerifyReport()
    seen_chains: set[int] = set()

    stmt = select(audit_events).order_by(
        audit_events.c.chain_id, audit_events.c.seq, audit_events.c.hash
    )
    # yield_per streams: a server-side cursor on PostgreSQL, the sqlite3 cursor on SQLite.
    result = conn.execution_options(yield_per=batch_size).execute(stmt).mappings()
    pending: dict[int, _ChainWalk] = {}
    done = 0
    try:
        for chain_id, rows in _by_chain(result):
            seen_chains.add(chain_id)
            walk = _ChainWalk(chain_id, before.get(chain_id))
            for row, nxt in _with_next(rows):
                walk.step(row, nxt)
                done += 1
                if progress is not None and done % PROGRESS_EVERY == 0:
                    progress(done, max(total, done))
            pending[chain_id] = walk
    finally:
        result.close()

    after = _heads(conn)
    for chain_id in sorted(seen_chains | set(before) | set(after)):
        walk = pending.get(chain_id) or _ChainWalk(chain_id, before.get(chain_id))
        walk.finish(after.get(chain_id))
        if walk.problem is not None:
            report.problems.append(walk.problem)
    report.chains = len(seen_chains | set(after))
    report.events = done
    if progress is not None:
        progress(done, max(total, done))
    return report


def _by_chain(rows: Iterator[RowMapping]) -> Iterator[tuple[int, Iterator[RowMapping]]]:
    """Group a stream ordered by chain_id without materialising a group."""
    it = iter(rows)
    sentinel: Any = object()
    current = next(it, sentinel)
    while current is not sentinel:
        chain_id = int(current["chain_id"])

        def group(first: RowMapping, cid: int) -> Iterator[RowMapping]:
            nonlocal current
            yield first
            for row in it:
                if int(row["chain_id"]) != cid:
                    current = row
                    return
                yield row
            current = sentinel

        g = group(current, chain_id)
        yield chain_id, g
        for _ in g:  # drain whatever the consumer left
            pass


def _with_next(rows: Iterator[RowMapping]) -> Iterator[tuple[RowMapping, RowMapping | None]]:
    it = iter(rows)
    prev = next(it, None)
    for row in it:
        assert prev is not None
        yield prev, row
        prev = row
    if prev is not None:
        yield prev, None


def _self_ok(row: Mapping[Any, Any]) -> bool:
    try:
        return row_hash(row) == row["hash"]
    except Exception:  # noqa: BLE001 - content that no longer parses is not genuine
        return False


class _ChainWalk:
    """The state of the walk along one chain: the last event accepted as genuine."""

    def __init__(self, chain_id: int, head_before: _Head | None) -> None:
        self.chain_id = chain_id
        self.head_before = head_before
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self.last_prev_hash: str | None = None
        self.problem: Problem | None = None
        self.problem_row = 0  # the seq of the row that revealed the problem

    def _report(self, seq: int, kind: Tampering, message: str, row_seq: int = 0) -> None:
        self.problem = Problem(self.chain_id, seq, kind, message)
        self.problem_row = row_seq or seq

    def step(self, row: Mapping[Any, Any], nxt: Mapping[Any, Any] | None) -> None:
        if self.problem is not None:
            return
        seq = int(row["seq"])
        expected = self.last_seq + 1
        if seq < expected:
            self._report(seq, Tampering.INSERTED, f"two events carry seq {seq}")
            return
        if seq > expected:
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            self._report(
                expected,
                Tampering.DELETED,
                f"event(s) {missing} missing: seq jumps to {seq}",
                row_seq=seq,
            )
            return
        self_ok = _self_ok(row)
        link_ok = row["prev_hash"] == self.last_hash
        if nxt is not None and nxt["prev_hash"] == row["prev_hash"] and not _self_ok(nxt):
            # Two events claim the same predecessor and the later one no longer matches its
            # hash (its seq was shifted up to make room): this one was slipped in before it.
            self._report(
                seq,
                Tampering.INSERTED,
                f"event {seq} and the event after it both claim to follow event {seq - 1}",
            )
            return
        if not link_ok and nxt is not None and nxt["prev_hash"] == self.last_hash:
            self._report(
                seq,
                Tampering.INSERTED,
                f"event {seq} does not follow event {seq - 1}, but the event after it does",
            )
            return
        if not self_ok and link_ok:
            self._report(
                seq, Tampering.ALTERED, f"event {seq} does not match its hash: content changed"
            )
            return
        if self_ok and not link_ok:
            if self.last_prev_hash is None:
                self._report(seq, Tampering.ALTERED, "event 1 does not start from the genesis hash")
            else:
                self._report(
                    self.last_seq,
                    Tampering.ALTERED,
                    f"event {seq} follows a different event {self.last_seq}: event "
                    f"{self.last_seq} was rewritten and its hash recomputed",
                )
            return
        if not self_ok and not link_ok:
            self._report(
                seq,
                Tampering.DELETED,
                f"event {seq} neither matches its hash nor follows event {seq - 1}: the event "
                f"that was {seq} was deleted and later events renumbered",
            )
            return
        if self.head_before is not None and seq == self.head_before.seq:
            if row["hash"] != self.head_before.last_hash:
                self._report(
                    seq, Tampering.ALTERED, f"event {seq} does not match the chain head's hash"
                )
                return
        self.last_seq = seq
        self.last_hash = str(row["hash"])
        self.last_prev_hash = str(row["prev_hash"])

    def finish(self, head_after: _Head | None) -> None:
        """Compare the end of the chain with its head (read again after the walk)."""
        if self.problem is not None:
            if head_after is not None and self.problem_row > head_after.seq:
                # The head is the authority on how many events were appended.
                self._report(
                    self.problem_row,
                    Tampering.INSERTED,
                    f"event {self.problem_row} lies beyond the chain head (seq {head_after.seq})",
                )
            return
        last = self.last_seq
        if head_after is None:
            if last:
                self._report(last, Tampering.DELETED, "the chain's head row is missing")
            return
        before = self.head_before
        if before is not None and last < before.seq:
            self._report(
                last + 1,
                Tampering.DELETED,
                f"event(s) {last + 1}..{before.seq} cut off the end: the head counts "
                f"{before.seq} events, the chain ends at {last}",
            )
        elif last > head_after.seq:
            self._report(
                head_after.seq + 1,
                Tampering.INSERTED,
                f"event {head_after.seq + 1} lies beyond the chain head (seq {head_after.seq})",
            )
        elif last == head_after.seq and self.last_hash != head_after.last_hash:
            self._report(last, Tampering.ALTERED, f"the chain head does not match event {last}")
        elif last < head_after.seq and (before is None or before.seq <= last):
            # Appended during the walk: the events up to the earlier head were checked.
            pass
