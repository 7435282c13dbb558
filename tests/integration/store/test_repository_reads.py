"""The repository's prebuilt reads for hot paths, on each database. Repository.referencing
("resources pointing at X from a date on") must return what the equivalent search starts from:
the right target and parameter only, current and undeleted versions, intervals ending at or
after the bound. Repository.read_with_targets must return what a read plus an _include would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import Repository


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp() * 1000)


def appointment(patient: str, start: str, *, other: str = "Practitioner/p1") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "end": start.replace(":00:00", ":15:00"),
        "participant": [
            {"actor": {"reference": patient}, "status": "accepted"},
            {"actor": {"reference": other}, "status": "accepted"},
        ],
    }


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in found]


def test_referencing_finds_the_targets_resources_from_the_bound_on(engine: Engine) -> None:
    since = _ms("2026-11-20T09:00:00+08:00")
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        before = repo.create("Appointment", appointment("Patient/a", "2026-11-20T08:00:00+08:00"))
        # Its interval [09:00:00.000, 09:00:00.999] ends after the bound: included.
        at = repo.create("Appointment", appointment("Patient/a", "2026-11-20T09:00:00+08:00"))
        later = repo.create("Appointment", appointment("Patient/a", "2026-12-01T10:00:00+08:00"))
        repo.create("Appointment", appointment("Patient/b", "2026-12-01T10:00:00+08:00"))
        # Appointment.patient is every participant that is a Patient: Patient/a counts here too.
        also = repo.create(
            "Appointment",
            appointment("Patient/c", "2026-12-02T10:00:00+08:00", other="Patient/a"),
        )
        gone = repo.create("Appointment", appointment("Patient/a", "2026-12-03T10:00:00+08:00"))
        repo.delete("Appointment", gone["id"])
        # A resource of another type pointing at the patient is not an Appointment.
        repo.create(
            "Encounter",
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": {"reference": "Patient/a"},
                "period": {"start": "2026-12-01"},
            },
        )
        found = repo.referencing(
            "Appointment", "patient", "Patient/a", date_param="date", since_ms=since
        )
        assert sorted(ids(found)) == sorted([at["id"], later["id"], also["id"]])
        assert before["id"] not in ids(found)
        assert ids(found) == sorted(ids(found))  # ordered by id
        # The practitioner parameter is another parameter: nothing of Patient/a there.
        assert (
            repo.referencing(
                "Appointment", "practitioner", "Patient/a", date_param="date", since_ms=since
            )
            == []
        )


def test_referencing_sees_the_current_version_and_unflushed_writes(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        a = repo.create("Appointment", appointment("Patient/a", "2026-12-01T10:00:00+08:00"))
        # Moved before the bound: its date rows are replaced, so it no longer qualifies.
        moved = {**a, "start": "2026-01-01T10:00:00+08:00", "end": "2026-01-01T10:15:00+08:00"}
        repo.update("Appointment", a["id"], moved)
        b = repo.create("Appointment", appointment("Patient/a", "2026-12-05T10:00:00+08:00"))
        assert repo.has_buffered()  # the create is still in the insert buffer
        found = repo.referencing(
            "Appointment",
            "patient",
            "Patient/a",
            date_param="date",
            since_ms=_ms("2026-11-01T00:00:00+08:00"),
        )
        assert ids(found) == [b["id"]]
        assert found[0]["meta"]["versionId"] == "1"


@pytest.mark.parametrize("target", ["Patient", "Patient/", "/a", ""])
def test_referencing_wants_type_and_id(engine: Engine, target: str) -> None:
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        with pytest.raises(ValueError, match="Type/id"):
            repo.referencing("Appointment", "patient", target, date_param="date", since_ms=0)


def schedule(*actors: str) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "active": True,
        "actor": [{"reference": a} for a in actors],
    }


def test_read_with_targets_reads_a_resource_and_what_it_points_at(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        role = repo.create("PractitionerRole", {"resourceType": "PractitionerRole"})
        loc = repo.create("Location", {"resourceType": "Location", "name": "一诊室"})
        gone = repo.create("Location", {"resourceType": "Location", "name": "旧诊室"})
        repo.delete("Location", gone["id"])
        other = repo.create("PractitionerRole", {"resourceType": "PractitionerRole"})
        sched = repo.create(
            "Schedule",
            schedule(
                f"PractitionerRole/{role['id']}",
                f"Location/{loc['id']}",
                f"Location/{gone['id']}",
                "Practitioner/missing",
            ),
        )
        repo.create("Schedule", schedule(f"PractitionerRole/{other['id']}"))
        # Still in the insert buffer: read_with_targets must see it.
        assert repo.has_buffered()
        got, targets = repo.read_with_targets("Schedule", sched["id"], "actor")
        assert got == sched
        assert set(targets) == {f"PractitionerRole/{role['id']}", f"Location/{loc['id']}"}
        assert targets[f"Location/{loc['id']}"]["name"] == "一诊室"
        # Another parameter, another set of targets (none here).
        assert repo.read_with_targets("Schedule", sched["id"], "service-type")[1] == {}


def test_read_with_targets_refuses_like_read(engine: Engine) -> None:
    with engine.begin() as conn:
        repo = Repository(conn, source="test")
        loc = repo.create("Location", {"resourceType": "Location"})
        sched = repo.create("Schedule", schedule(f"Location/{loc['id']}"))
        repo.delete("Schedule", sched["id"])
        for rid, status in ((sched["id"], 410), ("nope", 404)):
            with pytest.raises(OperationOutcomeError) as err:
                repo.read_with_targets("Schedule", rid, "actor")
            assert err.value.status == status
