"""`carenet demo` on a real database: a week of schedules at the hospitals of level 2 and above,
slots for every session, some booked through the booking rules, and nothing new the second
time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import func, select

from carenet.audit import audit_events
from carenet.bootstrap import build_store
from carenet.config import Settings
from carenet.demo.schedules import BOOKED_DAYS, DAYS, DEMO_AGENT, SCHEDULE_ID, hospital_grade
from carenet.domains.scheduling import model
from carenet.domains.scheduling.sessions import generate_slots
from carenet.fhir.identifiers import DATA_ORIGIN
from carenet.store.schema import resources

TZ = ZoneInfo("Asia/Shanghai")


def run_demo(db_url: str) -> str:
    """Run `carenet demo`; returns its summary line ("schedules N, slots M, booked K")."""
    env = {**os.environ, "CARENET_DATABASE_URL": db_url, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "carenet.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"schedules \d+, slots \d+, booked \d+", " ".join(done.stderr.split()))
    assert found, done.stderr
    return found.group(0)


def counts(store: Any) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(resources.c.res_type, func.count())
            .where(resources.c.deleted.is_(False))
            .group_by(resources.c.res_type)
        ).all()
    return {t: n for t, n in rows}


def search(repo: Any, rtype: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    return list(repo.search(rtype, [*params, ("_count", "1000")]).matches)


def local_day(value: str) -> date:
    dt = model.parse_dt(value, TZ)
    assert dt is not None
    return dt.astimezone(TZ).date()


def test_demo_adds_a_booked_week_of_schedules_at_level_2_hospitals_once(db_url) -> None:
    started = datetime.now(TZ)
    today = started.date()
    first = run_demo(db_url)
    store = build_store(Settings(database_url=db_url))
    try:
        after_first = counts(store)
        n_schedules, n_slots, n_booked = map(int, re.findall(r"\d+", first))
        assert n_schedules == after_first["Schedule"] > 0
        assert n_slots == after_first["Slot"]
        assert n_booked == after_first["Appointment"] > 0

        with store.unit_of_work() as uow:
            repo = uow.repo
            orgs = {o["id"]: o for o in search(repo, "Organization")}
            graded = {i for i, o in orgs.items() if (hospital_grade(o) or 0) >= 2}
            schedules = search(repo, "Schedule")
            slots = {
                s["id"]: s
                for schedule in schedules
                for s in search(repo, "Slot", ("schedule", f"Schedule/{schedule['id']}"))
            }
            residents = {p["id"] for p in search(repo, "Patient", ("_tag", f"{DATA_ORIGIN}|demo"))}
            appointments = [
                a
                for schedule in schedules
                for a in search(
                    repo,
                    "Appointment",
                    ("actor", model.refs_of(schedule, "actor", "PractitionerRole")[0]),
                )
            ]

        # Schedules only at hospitals of level 2 and above, and at each of them, owned by the
        # hospital of their doctor's role, one per role, each with a stable identifier.
        owners = Counter(model.owner_of(s) for s in schedules)
        assert set(owners) == graded and len(graded) == 5
        assert all(n <= 4 for n in owners.values())
        keys = [
            i["value"] for s in schedules for i in s["identifier"] if i["system"] == SCHEDULE_ID
        ]
        assert len(set(keys)) == len(schedules)

        # Slots: exactly what each schedule's sessions make for DAYS days from today.
        window = {today + timedelta(days=d) for d in range(DAYS)}
        for schedule in schedules:
            templates, findings = model.session_templates(schedule)
            assert findings == []
            expected = generate_slots(templates, first_day=today, days=DAYS, holidays=(), tz=TZ)
            own = [
                s
                for s in slots.values()
                if s["schedule"]["reference"] == f"Schedule/{schedule['id']}"
            ]
            assert sorted(model.parse_dt(s["start"], TZ) for s in own) == [
                spec.start for spec in expected
            ]
            assert {model.owner_of(s) for s in own} == {model.owner_of(schedule)}
        assert {local_day(s["start"]) for s in slots.values()} == {
            d
            for d in window
            if d.isoweekday() != 7  # weekday mornings, Saturday visits
        }

        # Bookings: online, by the demo, for demo residents within the booking rules (at most
        # five each, one a day per doctor), on future slots of each schedule's first clinic
        # days, and each slot's quota counts exactly its appointments.
        assert len(appointments) == n_booked
        taken: Counter[str] = Counter()
        for a in appointments:
            assert a["status"] == "booked"
            assert model.ext_value(a, model.BOOKED_BY, "valueString") == DEMO_AGENT
            assert model.ext_value(a, model.CHANNEL, "valueCode") == "online"
            assert model.patient_of(a) is not None
            start = model.parse_dt(a["start"], TZ)
            assert start is not None and start > started
            taken[model.slot_id_of(a) or ""] += 1
        assert set(taken) <= set(slots)
        patients = Counter(model.patient_of(a) for a in appointments)
        assert set(patients) <= residents and max(patients.values()) <= 5
        per_doctor_day = Counter(
            (model.patient_of(a), model.participants(a, "Practitioner")[0], local_day(a["start"]))
            for a in appointments
        )
        assert max(per_doctor_day.values()) == 1
        for schedule in schedules:
            ref = f"Schedule/{schedule['id']}"
            days = sorted(
                {local_day(s["start"]) for s in slots.values() if s["schedule"]["reference"] == ref}
            )
            booked_days = {
                local_day(a["start"])
                for a in appointments
                if slots[model.slot_id_of(a) or ""]["schedule"]["reference"] == ref
            }
            assert booked_days <= set(days[:BOOKED_DAYS])
        for slot_id, slot in slots.items():
            quotas = model.quotas_of(slot)
            assert sum(q.booked for q in quotas.values()) == taken[slot_id]
            assert slot["status"] == ("free" if any(q.free for q in quotas.values()) else "busy")

        # Every booking is in the audit chain, with its patient.
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(
                    audit_events.c.patient, audit_events.c.entities, audit_events.c.detail
                ).where(audit_events.c.agent == DEMO_AGENT)
            ).all()
        bookings = {
            next(e for e in orjson.loads(r.entities) if e.startswith("Appointment/")): r.patient
            for r in rows
            if r.detail and orjson.loads(r.detail).get("operation") == "Appointment/$book"
        }
        assert bookings == {
            f"Appointment/{a['id']}": f"Patient/{model.patient_of(a)}" for a in appointments
        }

        # Twice: nothing new.
        assert run_demo(db_url) == "schedules 0, slots 0, booked 0"
        assert counts(store) == after_first
    finally:
        store.engine.dispose()
