"""Appending to the audit chains in the action's own transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy import event as sa_event
from tests.integration.audit.helpers import CHAINS, chain_rows, fill, make_event

from carenet.audit import (
    AuditRecord,
    append,
    append_many,
    audit_chain_heads,
    audit_events,
    chain_for,
    ensure_chains,
    verify,
)
from carenet.audit import chain as chain_mod
from carenet.audit import verification as verify_mod
from carenet.audit.console import _reader
from carenet.audit.record import GENESIS_HASH, row_hash


def heads(engine: Engine) -> dict[int, tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_chain_heads))
        return {r.chain_id: (r.seq, r.last_hash) for r in rows}


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def test_a_clean_set_of_chains_verifies(engine: Engine) -> None:
    fill(engine, 300)
    calls: list[tuple[int, int]] = []
    with engine.connect() as conn:
        report = verify(conn, progress=lambda done, total: calls.append((done, total)))
    assert report.ok, report.problems
    assert (report.events, report.chains) == (300, CHAINS)
    assert calls[-1] == (300, 300)
    for chain_id, (seq, last_hash) in heads(engine).items():
        rows = chain_rows(engine, chain_id)
        assert [r["seq"] for r in rows] == list(range(1, seq + 1))
        assert rows[0]["prev_hash"] == GENESIS_HASH
        assert all(b["prev_hash"] == a["hash"] for a, b in zip(rows, rows[1:], strict=False))
        assert all(row_hash(r) == r["hash"] for r in rows)
        assert rows[-1]["hash"] == last_hash


def test_verification_streams_in_small_batches_with_the_same_result(engine: Engine) -> None:
    fill(engine, 60, chains=3)
    with engine.connect() as conn:
        report = verify(conn, batch_size=7)
    assert report.ok and report.events == 60 and report.chains == 3


def test_an_empty_database_verifies(engine: Engine) -> None:
    with engine.connect() as conn:
        ensure_chains(conn, CHAINS)
        conn.commit()
        report = verify(conn)
    assert report.ok and report.events == 0


def test_the_event_is_part_of_the_callers_transaction(
    engine: Engine, event: Callable[..., AuditRecord]
) -> None:
    with engine.connect() as conn:
        conn.begin()
        append(conn, event())
        conn.rollback()
    assert count(engine) == 0
    assert all(seq == 0 for seq, _ in heads(engine).values())

    kept = event(subtype="create", entities=("Patient/p1",), detail={"status": 201})
    with engine.begin() as conn:
        append(conn, kept)
    with engine.connect() as conn:
        (row,) = conn.execute(select(audit_events)).mappings()
        assert verify(conn).ok
    assert row["seq"] == 1
    assert {k: row[k] for k in ("action", "subtype", "agent", "patient", "entities", "detail")} == {
        "action": "C",
        "subtype": "create",
        "agent": kept.agent,
        "patient": kept.patient,
        "entities": '["Patient/p1"]',
        "detail": '{"status":201}',
    }


def test_append_needs_an_open_transaction(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(RuntimeError, match="open transaction"):
        append(conn, make_event())


def test_all_events_of_one_transaction_go_to_one_chain_in_order(engine: Engine) -> None:
    events = [make_event() for _ in range(5)]  # five different request ids
    with engine.begin() as conn:
        for e in events[:3]:
            append(conn, e)
        append_many(conn, events[3:])
    with engine.connect() as conn:
        rows = list(conn.execute(select(audit_events).order_by(audit_events.c.seq)).mappings())
        assert verify(conn).ok
    assert len({r["chain_id"] for r in rows}) == 1
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["agent"] for r in rows] == [e.agent for e in events]


def test_an_explicit_chain_must_be_one_of_the_chains_and_the_transactions_own(
    engine: Engine,
) -> None:
    with engine.connect() as conn, conn.begin():
        with pytest.raises(ValueError, match="not one of 0..7"):
            append(conn, make_event(), chain=CHAINS)
        append(conn, make_event(), chain=2)
        with pytest.raises(ValueError, match="one chain"):
            append(conn, make_event(), chain=3)
        append(conn, make_event(), chain=2)
        append(conn, make_event())  # the transaction's chain
    assert [r["seq"] for r in chain_rows(engine, 2)] == [1, 2, 3]


def _in_thread(fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    sa_event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def _appended(engine: Engine, **kw: Any) -> tuple[int, int]:
    """Append one event in a transaction of its own; its (chain, seq)."""
    e = make_event(**kw)
    with engine.begin() as conn:
        append(conn, e)
    with engine.connect() as conn:
        row = conn.execute(
            select(audit_events.c.chain_id, audit_events.c.seq).where(
                audit_events.c.request_id == e.request_id
            )
        ).one()
    return int(row.chain_id), int(row.seq)


def test_sqlite_appends_to_the_requests_chain(sqlite_engine: Engine) -> None:
    engine = sqlite_engine  # its writers are serialised whatever the chain
    for _ in range(20):
        e = make_event()
        with engine.begin() as conn:
            append(conn, e)
        assert chain_rows(engine, chain_for(e.request_id, CHAINS))[-1]["request_id"] == (
            e.request_id
        )


@pytest.fixture
def no_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """No chain held by threads of earlier tests."""
    monkeypatch.setattr(chain_mod, "_taken", Counter())


def test_a_thread_that_leaves_its_chain_takes_another(no_claims: None) -> None:
    def hops() -> list[int]:
        seen = [chain_mod._own_chain(CHAINS)]
        for _ in range(200):
            chain_mod._thread.chain = -1  # as after a head moved by another writer
            seen.append(chain_mod._own_chain(CHAINS))
        return seen

    seen = _in_thread(hops)
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False))
    assert set(seen) == set(range(CHAINS))
    # The thread has ended: its claim is released with its thread-local values.
    for _ in range(200):
        gc.collect()
        if sum(chain_mod._taken.values()) == 0:
            break
        time.sleep(0.01)
    assert sum(chain_mod._taken.values()) == 0


def test_postgresql_threads_of_a_process_keep_chains_of_their_own(
    pg_engine: Engine, no_claims: None
) -> None:
    engine = pg_engine
    barrier = threading.Barrier(4, timeout=60)

    def worker() -> set[int]:
        barrier.wait()  # all four hold a chain at once
        chains = {_appended(engine)[0] for _ in range(10)}
        barrier.wait()
        return chains

    results: list[set[int]] = []
    pool = [threading.Thread(target=lambda: results.append(worker())) for _ in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert all(len(chains) == 1 for chains in results), results
    assert len(set().union(*results)) == 4
    with engine.connect() as conn:
        assert verify(conn).ok


def test_postgresql_appends_after_the_first_take_one_statement(pg_engine: Engine) -> None:
    # (SQLite holds the write lock already: reading the head there costs no round trip.)
    engine = pg_engine
    with engine.begin() as conn:
        ensure_chains(conn, CHAINS)

    def run() -> list[list[str]]:
        seen = _statements(engine)
        per_append = []
        for _ in range(3):
            seen.clear()
            _appended(engine)
            per_append.append([s for s in seen if "audit_chain_heads" in s])
        return per_append

    first, second, third = _in_thread(run)
    assert len(first) == 2 and "FOR UPDATE" in first[0]  # lock and read the head, then write
    assert len(second) == len(third) == 1  # the head this thread wrote, moved if unchanged
    with engine.connect() as conn:
        assert verify(conn).ok


def test_postgresql_a_head_moved_by_another_writer_is_read_again_and_the_thread_moves_on(
    pg_engine: Engine, no_claims: None
) -> None:
    engine = pg_engine
    seen = _statements(engine)

    def thread_a() -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]:
        first = _appended(engine)
        # Another process (here a thread that names the chain) writes this chain meanwhile.
        _in_thread(lambda: _appended_on(engine, first[0]))
        seen.clear()
        second = _appended(engine)
        head_statements = len([s for s in seen if "audit_chain_heads" in s])
        third = _appended(engine)
        return first, second, third, head_statements

    first, second, third, head_statements = _in_thread(thread_a)
    assert second == (first[0], 3)  # linked after the other writer's event, no gap
    assert head_statements == 3  # the conditional move found it moved; lock, read, write
    assert third[0] != first[0]  # the thread left the chain it shares with another writer
    with engine.connect() as conn:
        report = verify(conn)
    assert report.ok and report.events == 4


def _appended_on(engine: Engine, chain: int) -> None:
    with engine.begin() as conn:
        append(conn, make_event(), chain=chain)


def test_appends_that_commit_during_verification_are_not_taken_for_insertions(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(engine, 50, chains=2)
    monkeypatch.setattr(verify_mod, "PROGRESS_EVERY", 5)

    def append_meanwhile(done: int, total: int) -> None:
        with engine.begin() as conn:
            append(conn, make_event(), chains=2)

    reader = _reader(engine)  # on SQLite a reader that does not hold the write lock
    try:
        with reader.connect() as conn:
            report = verify(conn, progress=append_meanwhile, batch_size=3)
    finally:
        if reader is not engine:
            reader.dispose()
    assert report.ok, report.problems
    assert count(engine) > 50
    with engine.connect() as conn:
        assert verify(conn).ok


def test_concurrent_writers_keep_every_chain_gap_free(engine: Engine) -> None:
    """8 threads x 50 actions, a fifth of them failing after their event was appended. On
    PostgreSQL the head row locks do the work; SQLite serialises writers on its own."""
    threads, per_thread = 8, 50
    committed: list[AuditRecord] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(n: int) -> None:
        rnd = random.Random(n)
        try:
            barrier.wait()
            for _ in range(per_thread):
                e = make_event(agent=f"Practitioner/worker-{n}")
                with engine.connect() as conn:
                    conn.begin()
                    append(conn, e)
                    if rnd.random() < 0.2:
                        conn.rollback()  # the action failed after its event was appended
                        continue
                    conn.commit()
                with lock:
                    committed.append(e)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert 0 < len(committed) < threads * per_thread
    with engine.connect() as conn:
        report = verify(conn)
        rows: list[Any] = list(conn.execute(select(audit_events.c.chain_id, audit_events.c.seq)))
        stored = {r for (r,) in conn.execute(select(audit_events.c.request_id))}
    assert report.ok, report.problems
    assert report.events == len(committed) == len(rows)
    assert stored == {e.request_id for e in committed}
    by_chain: dict[int, list[int]] = {}
    for chain_id, seq in rows:
        by_chain.setdefault(chain_id, []).append(seq)
    for seqs in by_chain.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    assert sum(seq for seq, _ in heads(engine).values()) == len(committed)
