"""The index rows of a resource written over, and rows of our own tables (the notification
outbox), go at the next flush, on PostgreSQL in the same statement as the rows of its new
version; what reads within the transaction sees, and what a rolled-back savepoint forgets, on
each database."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select
from tests.integration.store.test_repository_locks import patient, statements, stored_patient

from carenet.adapters.notify import notify_outbox
from carenet.store.repository import Repository
from carenet.store.schema import INDEX_TABLES


def index_statements(conn: Connection) -> AbstractContextManager[list[str]]:
    """The statements that touch an index table, while the block runs."""
    return statements(conn, lambda s: " idx_" in s)


def index_rows(conn: Connection, res_id: str) -> int:
    return sum(
        int(conn.execute(select(func.count()).where(t.c.res_id == res_id)).scalar_one())
        for t in INDEX_TABLES.values()
    )


def families(repo: Any, *names: str) -> dict[str, list[str]]:
    return {n: [m["id"] for m in repo.search("Patient", [("family", n)]).matches] for n in names}


def test_an_update_replaces_its_index_rows_at_the_flush(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        stored = index_rows(conn, pid)
        with index_statements(conn) as statements:
            current = repo.read_for_update("Patient", pid)
            repo.update("Patient", pid, {**current, "name": [{"family": "李"}]})
            assert statements == []  # nothing yet: the old rows go with the flush
            repo.flush()
        if engine.dialect.name == "postgresql":
            # One round trip: the old rows deleted and the new ones inserted together.
            assert len(statements) == 1
            assert "DELETE FROM idx_string" in statements[0]
            assert "INSERT INTO idx_string" in statements[0]
        assert index_rows(conn, pid) == stored  # the same parameters, one set of rows
        assert families(repo, "王", "李") == {"王": [], "李": [pid]}


def test_a_search_after_an_update_in_the_same_transaction_sees_only_the_new_version(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        current = repo.read_for_update("Patient", pid)
        v2, _ = repo.update("Patient", pid, {**current, "name": [{"family": "李"}]})
        assert families(repo, "王", "李") == {"王": [], "李": [pid]}
        # A second update after that flush, then a delete: each replaces what is stored.
        repo.update("Patient", pid, {**v2, "name": [{"family": "赵"}]})
        assert families(repo, "李", "赵") == {"李": [], "赵": [pid]}
        assert repo.delete("Patient", pid) is True
        assert families(repo, "赵") == {"赵": []}
        assert index_rows(conn, pid) == 0


def test_two_updates_without_a_flush_leave_only_the_last_versions_index_rows(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        stored = index_rows(conn, pid)
        v1 = repo.read_for_update("Patient", pid)
        v2, _ = repo.update("Patient", pid, {**v1, "name": [{"family": "李"}]})
        # 李's rows are still in the buffer when this one replaces them.
        repo.update("Patient", pid, {**v2, "name": [{"family": "张"}]}, if_match=2)
        assert families(repo, "王", "李", "张") == {"王": [], "李": [], "张": [pid]}
        assert index_rows(conn, pid) == stored


def test_an_update_in_a_rolled_back_savepoint_leaves_the_stored_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        stored = index_rows(conn, pid)
        savepoint = conn.begin_nested()
        repo.update("Patient", pid, {**patient("李"), "id": pid})
        savepoint.rollback()  # a batch entry failed after its update
        repo.discard_buffer()
        repo.flush()
        # The version 1 rows the savepoint was to replace are still there, and only they.
        assert index_rows(conn, pid) == stored
        assert families(repo, "王", "李") == {"王": [pid], "李": []}


def test_updates_of_several_resources_replace_each_ones_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, first = stored_patient(conn)
        second = str(repo.create("Patient", patient("王"))["id"])
        untouched = str(repo.create("Patient", patient("王"))["id"])
        repo.flush()
        stored = index_rows(conn, first)
        with index_statements(conn) as statements:
            repo.update("Patient", first, {**patient("李"), "id": first})
            repo.update("Patient", second, {**patient("赵"), "id": second})
            repo.flush()
        if engine.dialect.name == "postgresql":
            assert len(statements) == 1
        assert families(repo, "王", "李", "赵") == {
            "王": [untouched],
            "李": [first],
            "赵": [second],
        }
        assert index_rows(conn, first) == index_rows(conn, second) == stored


def _outbox_row(message_id: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "channel": "sms",
        "to_index": "idx",
        "to_enc": "enc",
        "template": "appointment-booked",
        "params_enc": "{}",
        "status": "pending",
        "attempts": 0,
        "created": 1,
    }


def _outbox_ids(conn: Connection) -> list[str]:
    return sorted(conn.execute(select(notify_outbox.c.id)).scalars())


def test_rows_of_our_own_tables_go_with_the_flush(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        current = repo.read_for_update("Patient", pid)
        writes = statements(
            conn, lambda s: not s.startswith("SELECT") and ("notify_outbox" in s or " idx_" in s)
        )
        with writes as sent:
            repo.update("Patient", pid, {**current, "name": [{"family": "李"}]})
            repo.add_rows("notify_outbox", [_outbox_row("m1"), _outbox_row("m2")])
            assert sent == [] and _outbox_ids(conn) == []  # buffered
            repo.flush()
        assert _outbox_ids(conn) == ["m1", "m2"]
        assert conn.execute(select(notify_outbox.c.sent_at)).scalars().all() == [None, None]
        if engine.dialect.name == "postgresql":
            # One statement: the outbox rows beside the resource's new version and index rows.
            assert len(sent) == 1
            assert "INSERT INTO notify_outbox" in sent[0] and "INSERT INTO idx_string" in sent[0]


def test_a_rolled_back_savepoint_forgets_its_buffered_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, _ = stored_patient(conn)
        repo.add_rows("notify_outbox", [_outbox_row("kept")])
        repo.flush()
        savepoint = conn.begin_nested()
        repo.add_rows("notify_outbox", [_outbox_row("forgotten")])
        savepoint.rollback()
        repo.discard_buffer()
        repo.flush()
        assert _outbox_ids(conn) == ["kept"]


@pytest.mark.parametrize("table", ["resources", "resource_history", "idx_token", "no_such_table"])
def test_add_rows_refuses_the_resource_tables_and_unknown_ones(engine: Engine, table: str) -> None:
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        with pytest.raises(ValueError, match="does not write"):
            repo.add_rows(table, [{"id": "x"}])
        assert not repo.has_buffered()
