"""Tampering with the audit tables directly in SQL, each way an attacker with database access
might, and verify() naming the event and the kind of tampering — on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from tests.integration.audit.helpers import chain_rows, fill, make_event

from carenet.audit import Tampering, verify
from carenet.audit.record import canonical_bytes, chain_hash, row_fields, row_hash

K = 3  # the event in the middle that is tampered with


@pytest.fixture
def chain(engine: Engine) -> tuple[int, int]:
    """120 events in 8 chains; returns the longest chain and its length."""
    fill(engine, 120)
    with engine.connect() as conn:
        chain_id, n = conn.execute(
            text(
                "SELECT chain_id, count(*) AS n FROM audit_events GROUP BY chain_id "
                "ORDER BY count(*) DESC, chain_id LIMIT 1"
            )
        ).one()
        assert verify(conn).ok
    assert n >= 6
    return int(chain_id), int(n)


def found(engine: Engine) -> list[tuple[int, int, Tampering]]:
    with engine.connect() as conn:
        report = verify(conn)
    return [(p.chain_id, p.seq, p.kind) for p in report.problems]


def tamper(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def insert_row(conn: Connection, row: dict[str, Any]) -> None:
    cols = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    conn.execute(text(f"INSERT INTO audit_events ({cols}) VALUES ({values})"), row)


def shift_up(conn: Connection, chain_id: int, from_seq: int) -> None:
    """Renumber events from_seq.. one up, in two steps so that the primary key never clashes."""
    conn.execute(
        text("UPDATE audit_events SET seq = -(seq + 1) WHERE chain_id = :c AND seq >= :s"),
        {"c": chain_id, "s": from_seq},
    )
    conn.execute(
        text("UPDATE audit_events SET seq = -seq WHERE chain_id = :c AND seq < 0"), {"c": chain_id}
    )


def forged(template: dict[str, Any], chain_id: int, seq: int, prev_hash: str) -> dict[str, Any]:
    """A row the attacker built with the published algorithm: self-consistent and linked."""
    fake = make_event(agent="Practitioner/forger").row_values()
    row = {**fake, "chain_id": chain_id, "seq": seq, "prev_hash": prev_hash, "hash": ""}
    row["hash"] = chain_hash(prev_hash, canonical_bytes(row_fields(row)))
    assert set(row) == set(template)
    return row


# --------------------------------------------------------------------------- altered


def test_an_altered_event_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    tamper(
        engine,
        "UPDATE audit_events SET agent = 'Practitioner/someone-else' WHERE chain_id = :c AND seq = :k",
        c=c,
        k=K,
    )
    assert found(engine) == [(c, K, Tampering.ALTERED)]


def test_an_altered_outcome_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    tamper(engine, "UPDATE audit_events SET outcome = 4 WHERE chain_id = :c AND seq = 1", c=c)
    assert found(engine) == [(c, 1, Tampering.ALTERED)]


def test_an_altered_event_with_a_recomputed_hash_is_named(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, _ = chain
    row = chain_rows(engine, c)[K - 1]
    row["patient"] = "Patient/someone-else"
    tamper(
        engine,
        "UPDATE audit_events SET patient = :p, hash = :h WHERE chain_id = :c AND seq = :k",
        p=row["patient"],
        h=row_hash(row),
        c=c,
        k=K,
    )
    assert found(engine) == [(c, K, Tampering.ALTERED)]


def test_the_last_event_altered_with_a_recomputed_hash_is_named_by_the_head(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, n = chain
    row = chain_rows(engine, c)[-1]
    row["query"] = "name=forged"
    tamper(
        engine,
        "UPDATE audit_events SET query = :q, hash = :h WHERE chain_id = :c AND seq = :n",
        q=row["query"],
        h=row_hash(row),
        c=c,
        n=n,
    )
    assert found(engine) == [(c, n, Tampering.ALTERED)]


def test_an_event_moved_to_another_chain_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, n = chain
    with engine.begin() as conn:
        other = conn.execute(
            text("SELECT min(chain_id) FROM audit_events WHERE chain_id <> :c"), {"c": c}
        ).scalar_one()
        conn.execute(
            text(
                "UPDATE audit_events SET chain_id = :o, seq = 9999 WHERE chain_id = :c AND seq = :n"
            ),
            {"o": other, "c": c, "n": n},
        )
    assert sorted(found(engine)) == sorted(
        [(c, n, Tampering.DELETED), (other, 9999, Tampering.INSERTED)]
    )


# --------------------------------------------------------------------------- deleted


def test_a_deleted_event_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    tamper(engine, "DELETE FROM audit_events WHERE chain_id = :c AND seq = :k", c=c, k=K)
    assert found(engine) == [(c, K, Tampering.DELETED)]


def test_a_deleted_event_is_named_even_when_the_rest_are_renumbered(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, _ = chain
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM audit_events WHERE chain_id = :c AND seq = :k"), {"c": c, "k": K}
        )
        conn.execute(
            text("UPDATE audit_events SET seq = -(seq - 1) WHERE chain_id = :c AND seq > :k"),
            {"c": c, "k": K},
        )
        conn.execute(
            text("UPDATE audit_events SET seq = -seq WHERE chain_id = :c AND seq < 0"), {"c": c}
        )
        conn.execute(
            text("UPDATE audit_chain_heads SET seq = seq - 1 WHERE chain_id = :c"), {"c": c}
        )
    assert found(engine) == [(c, K, Tampering.DELETED)]


def test_events_cut_off_the_end_are_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, n = chain
    tamper(engine, "DELETE FROM audit_events WHERE chain_id = :c AND seq >= :s", c=c, s=n - 1)
    assert found(engine) == [(c, n - 1, Tampering.DELETED)]


def test_a_chain_emptied_entirely_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    tamper(engine, "DELETE FROM audit_events WHERE chain_id = :c", c=c)
    assert found(engine) == [(c, 1, Tampering.DELETED)]


def test_a_deleted_chain_head_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, n = chain
    tamper(engine, "DELETE FROM audit_chain_heads WHERE chain_id = :c", c=c)
    assert found(engine) == [(c, n, Tampering.DELETED)]


# --------------------------------------------------------------------------- inserted


def test_an_event_appended_behind_the_heads_back_is_named(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, n = chain
    last = chain_rows(engine, c)[-1]
    with engine.begin() as conn:
        insert_row(conn, forged(last, c, n + 1, last["hash"]))
    assert found(engine) == [(c, n + 1, Tampering.INSERTED)]


def test_a_clumsily_forged_event_at_the_end_is_named(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, n = chain
    last = chain_rows(engine, c)[-1]
    with engine.begin() as conn:
        insert_row(
            conn, {**last, "seq": n + 1, "agent": "Practitioner/forger", "prev_hash": "f" * 64}
        )
    assert found(engine) == [(c, n + 1, Tampering.INSERTED)]


def test_an_event_slipped_into_the_middle_is_named(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    rows = chain_rows(engine, c)
    with engine.begin() as conn:
        shift_up(conn, c, K)
        insert_row(conn, forged(rows[K - 1], c, K, rows[K - 2]["hash"]))
        conn.execute(
            text("UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain_id = :c"), {"c": c}
        )
    assert found(engine) == [(c, K, Tampering.INSERTED)]


def test_a_copied_event_slipped_into_the_middle_is_named(
    engine: Engine, chain: tuple[int, int]
) -> None:
    c, _ = chain
    original = chain_rows(engine, c)[K - 1]
    with engine.begin() as conn:
        shift_up(conn, c, K)
        insert_row(conn, {**original, "agent": "Practitioner/forger"})
    assert found(engine) == [(c, K, Tampering.INSERTED)]


def test_an_event_wedged_between_two_without_renumbering_is_named(
    engine: Engine, chain: tuple[int, int]
) -> None:
    """The forger takes the place of event K (deleting it) and links the next event to itself."""
    c, _ = chain
    rows = chain_rows(engine, c)
    fake = forged(rows[K - 1], c, K, rows[K - 2]["hash"])
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM audit_events WHERE chain_id = :c AND seq = :k"), {"c": c, "k": K}
        )
        insert_row(conn, fake)
    # K's successor still points at the genuine K: K's content is not what was hashed.
    assert found(engine) == [(c, K, Tampering.ALTERED)]


def test_only_the_tampered_chain_is_reported(engine: Engine, chain: tuple[int, int]) -> None:
    c, _ = chain
    tamper(engine, "UPDATE audit_events SET recorded = recorded + 1 WHERE chain_id = :c", c=c)
    with engine.connect() as conn:
        report = verify(conn)
    assert [(p.chain_id, p.seq, p.kind) for p in report.problems] == [(c, 1, Tampering.ALTERED)]
    assert report.problems[0].message == "event 1 does not match its hash: content changed"
    assert report.problem(c) is report.problems[0]
    assert report.events == 120 and not report.ok
