"""A row this transaction holds locked is not read again to write its next version, on each
database; what a rolled-back savepoint knew is forgotten, and a stale version still refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, update

from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import Repository
from carenet.store.schema import resources


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


def stored_patient(conn: Connection) -> tuple[Repository, str]:
    """A repository on ``conn`` and the id of a Patient 王 written to the database (flushed,
    not waiting in the insert buffer)."""
    repo = Repository(conn, source="test")
    pid = str(repo.create("Patient", patient("王"))["id"])
    repo.flush()
    return repo, pid


@contextmanager
def statements(conn: Connection, keep: Callable[[str], bool]) -> Iterator[list[str]]:
    """The statements sent on ``conn`` that ``keep`` accepts, while the block runs."""
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if keep(statement):
            seen.append(statement)

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", record)


def reads_of_resources(conn: Connection) -> AbstractContextManager[list[str]]:
    """The statements that read the resources table, while the block runs."""
    return statements(
        conn, lambda s: s.lstrip().upper().startswith("SELECT") and "FROM resources" in s
    )


def test_update_after_read_for_update_reads_the_row_once(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        with reads_of_resources(conn) as reads:
            current = repo.read_for_update("Patient", pid)
            v2, created = repo.update("Patient", pid, {**current, "name": [{"family": "李"}]})
            # The row is still locked (written by this transaction): no read for the next one.
            v3, _ = repo.update("Patient", pid, {**v2, "gender": "female"}, if_match=2)
            assert repo.delete("Patient", pid) is True
        assert len(reads) == 1
        assert (v2["meta"]["versionId"], v3["meta"]["versionId"], created) == ("2", "3", False)
        assert repo.current_version("Patient", pid) == (4, True)
        # If-Match is still checked against the version this transaction knows.
        with pytest.raises(OperationOutcomeError) as err:
            repo.update("Patient", pid, {**v3}, if_match=3)
        assert err.value.status == 412


def test_a_rolled_back_savepoint_forgets_its_versions(engine: Engine) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        savepoint = conn.begin_nested()
        first = repo.read_for_update("Patient", pid)
        repo.update("Patient", pid, {**first, "gender": "male"})
        savepoint.rollback()
        repo.discard_buffer()  # what a batch Bundle does when an entry fails
        again, _ = repo.update("Patient", pid, {**first, "gender": "female"})
        assert again["meta"]["versionId"] == "2"
        assert repo.read("Patient", pid)["gender"] == "female"


def test_a_version_changed_behind_the_repository_is_a_conflict_not_a_lost_update(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        repo, pid = stored_patient(conn)
        current = repo.read_for_update("Patient", pid)
        # Not through the repository (as no CareNet code does): its version moves on.
        conn.execute(
            update(resources)
            .where(resources.c.res_type == "Patient", resources.c.res_id == pid)
            .values(version=5)
        )
        with pytest.raises(OperationOutcomeError) as err:
            repo.update("Patient", pid, {**current, "gender": "male"})
        assert err.value.status == 409
