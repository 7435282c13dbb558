"""Booking, cancelling and rescheduling through the FHIR operations, on both stores: every rule
refuses with its code and leaves nothing changed; capacity is taken and returned exactly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tests.integration.domains.scheduling.conftest import MONDAY, Env, outcome_codes


def _out(r: Any, name: str = "appointment") -> dict:
    return next(p["resource"] for p in r.json()["parameter"] if p["name"] == name)


def _refused(env: Env, r: Any, status: int, code: str | list[str], before: dict[str, int]) -> None:
    assert r.status_code == status, r.text
    assert outcome_codes(r) == ([code] if isinstance(code, str) else code), r.text
    assert env.counts() == before, "a refused booking changed the database"


def test_a_verified_patient_books_a_released_slot_and_it_becomes_busy(env: Env) -> None:
    slots = env.generate("2027-03-02")
    assert [s["start"] for s in slots[:2]] == [
        "2027-03-02T08:00:00+08:00",
        "2027-03-02T08:30:00+08:00",
    ]
    assert len(slots) == 8
    p = env.clinic.patients[0]
    r = env.book("patient0", slots[0], p)
    assert r.status_code == 200, r.text
    appt = _out(r)
    assert appt["status"] == "booked"
    assert appt["slot"] == [{"reference": f"Slot/{slots[0]['id']}"}]
    assert {x["actor"]["reference"] for x in appt["participant"]} >= {
        f"Patient/{p}",
        f"PractitionerRole/{env.clinic.ids['role:doctor']}",
        f"Practitioner/{env.clinic.ids['practitioner:doctor']}",
    }
    assert (appt["start"], appt["end"]) == (slots[0]["start"], slots[0]["end"])
    slot = env.read(f"Slot/{slots[0]['id']}")
    assert slot["status"] == "busy"
    assert slot["meta"]["versionId"] == "2"
    assert env.messages(p) == ["appointment-booked"]
    # The patient finds it by ordinary FHIR search; so does the doctor's institution.
    mine = env.client.get(
        "/fhir/Appointment", params={"patient": f"Patient/{p}"}, headers=env.headers("patient0")
    ).json()
    assert [e["resource"]["id"] for e in mine.get("entry", [])] == [appt["id"]]
    desk = env.client.get(
        "/fhir/Appointment", params={"date": "2027-03-02"}, headers=env.headers("nurse")
    ).json()
    assert [e["resource"]["id"] for e in desk.get("entry", [])] == [appt["id"]]


def test_a_second_booking_of_a_single_place_slot_is_refused_as_full(env: Env) -> None:
    slot = env.generate("2027-03-02")[0]
    assert env.book("patient0", slot, env.clinic.patients[0]).status_code == 200
    before = env.counts()
    r = env.book("patient1", slot, env.clinic.patients[1])
    _refused(env, r, 409, "APPT-SLOT-FULL", before)


def test_an_account_without_real_name_verification_may_not_book(env: Env) -> None:
    slot = env.generate("2027-03-02")[0]
    before = env.counts()
    # It acts for nobody, so naming a patient finds no one it may book for.
    r = env.book("unverified", slot, env.clinic.patients[0])
    assert r.status_code == 404, r.text
    assert env.counts() == before


def test_a_patient_cannot_book_for_someone_else(env: Env) -> None:
    slot = env.generate("2027-03-02")[0]
    before = env.counts()
    r = env.book("patient0", slot, env.clinic.patients[1])
    assert r.status_code == 404, r.text
    assert env.counts() == before


def test_slots_are_not_bookable_before_release_time(env: Env) -> None:
    slot = env.generate("2027-03-09")[0]  # released 2027-03-02 08:00 (7 days before)
    env.now = MONDAY.replace(day=2, hour=7, minute=59)
    before = env.counts()
    _refused(
        env, env.book("patient0", slot, env.clinic.patients[0]), 422, "APPT-NOT-RELEASED", before
    )
    env.now = MONDAY.replace(day=2, hour=8, minute=0)
    assert env.book("patient0", slot, env.clinic.patients[0]).status_code == 200


def test_past_slots_and_slots_beyond_the_window_are_refused(env: Env) -> None:
    past = env.generate("2027-03-01")[0]  # 08:00 today; now is 09:00
    env.now = MONDAY.replace(hour=9)
    before = env.counts()
    _refused(env, env.book("patient0", past, env.clinic.patients[0]), 422, "APPT-SLOT-PAST", before)
    # Day 15 after today is beyond the 14-day window (release 7 days before is long past).
    env.now = MONDAY.replace(hour=9)
    far = env.generate("2027-03-16")[0]
    env.now = MONDAY.replace(hour=9) + timedelta(days=0)
    before = env.counts()
    r = env.book("patient0", far, env.clinic.patients[0])
    assert r.status_code == 422
    assert "APPT-BEYOND-WINDOW" in outcome_codes(r)
    assert env.counts() == before


def test_one_booking_per_patient_per_doctor_per_day(env: Env) -> None:
    slots = env.generate("2027-03-02")
    p = env.clinic.patients[0]
    assert env.book("patient0", slots[0], p).status_code == 200
    before = env.counts()
    _refused(env, env.book("patient0", slots[3], p), 422, "APPT-DUPLICATE-DAY", before)


def test_a_cancelled_booking_does_not_count_against_the_patient(env: Env) -> None:
    slots = env.generate("2027-03-02")
    p = env.clinic.patients[0]
    appt = _out(env.book("patient0", slots[0], p))
    assert env.op("patient0", f"Appointment/{appt['id']}/$cancel").status_code == 200
    # Same doctor, same day: allowed again once the first booking is cancelled.
    assert env.book("patient0", slots[3], p).status_code == 200


def test_at_most_five_future_bookings_per_patient(env: Env) -> None:
    days = [f"2027-03-0{d}" for d in range(2, 8)]
    slots = [env.generate(d)[0] for d in days]
    p = env.clinic.patients[0]
    for s in slots[:5]:
        assert env.book("patient0", s, p).status_code == 200
    before = env.counts()
    _refused(env, env.book("patient0", slots[5], p), 422, "APPT-TOO-MANY", before)


def test_patients_book_online_only_and_staff_on_site(env: Env) -> None:
    slots = env.generate("2027-03-02")
    before = env.counts()
    r = env.book("patient0", slots[0], env.clinic.patients[0], channel="onsite")
    # ... and the slot has no on-site place anyway (no session reserves one).
    _refused(env, r, 422, ["APPT-CHANNEL-NOT-ALLOWED", "APPT-SLOT-FULL"], before)
    # Every place of this session is online; the desk gets what is left 24 hours before.
    r = env.book("nurse", slots[0], env.clinic.patients[0])
    assert r.status_code == 409, r.text
    env.now = MONDAY.replace(hour=8)
    r = env.book("nurse", slots[0], env.clinic.patients[0])
    assert r.status_code == 200, r.text
    appt = _out(r)
    channel = [e for e in appt["extension"] if e["url"].endswith("appointment-channel")]
    assert channel[0]["valueCode"] == "onsite"


def test_reserved_quota_opens_to_every_channel_at_pool_release(env: Env) -> None:
    # One slot of capacity 2 with one place reserved for on-site registration.
    from datetime import time

    from tests.integration.domains.scheduling.world import weekly

    from carenet.domains.scheduling.model import SESSION, session_extension

    sched_id = env.clinic.ids["schedule"]
    schedule = env.read(f"Schedule/{sched_id}")
    schedule["extension"] = [e for e in schedule["extension"] if e["url"] != SESSION] + [
        session_extension(t)
        for t in weekly(
            start=time(8), end=time(8, 30), minutes=30, capacity=2, reserved={"onsite": 1}
        )
    ]
    r = env.client.put(
        f"/fhir/Schedule/{sched_id}", json=schedule, headers=env.headers("institution_admin")
    )
    assert r.status_code == 200, r.text
    slot = env.generate("2027-03-03")[0]
    quotas = {
        q["extension"][0]["valueCode"]: q["extension"][1]["valueUnsignedInt"]
        for q in slot["extension"]
        if q["url"].endswith("slot-quota")
    }
    assert quotas == {"online": 1, "onsite": 1}
    assert env.book("patient0", slot, env.clinic.patients[0]).status_code == 200
    before = env.counts()
    _refused(env, env.book("patient1", slot, env.clinic.patients[1]), 409, "APPT-SLOT-FULL", before)
    env.now = MONDAY.replace(day=2, hour=8)  # 24 hours before the slot: the pool opens
    r = env.book("patient1", slot, env.clinic.patients[1])
    assert r.status_code == 200, r.text
    taken = [e for e in _out(r)["extension"] if e["url"].endswith("appointment-quota")]
    assert taken[0]["valueCode"] == "onsite"
    assert env.read(f"Slot/{slot['id']}")["status"] == "busy"


def test_cancelling_returns_the_place_and_a_patient_cannot_cancel_after_the_cutoff(
    env: Env,
) -> None:
    slots = env.generate("2027-03-02")
    p = env.clinic.patients[0]
    appt = _out(env.book("patient0", slots[0], p))
    r = env.op("patient0", f"Appointment/{appt['id']}/$cancel", reason="临时有事")
    assert r.status_code == 200, r.text
    cancelled = _out(r)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"]["coding"][0]["code"] == "pat"
    assert env.read(f"Slot/{slots[0]['id']}")["status"] == "free"
    before = env.counts()
    r = env.op("patient0", f"Appointment/{appt['id']}/$cancel")
    _refused(env, r, 422, "APPT-WRONG-STATE", before)
    # Book again; 1 h 59 min before the start is past the 2-hour cut-off for the patient.
    appt = _out(env.book("patient1", slots[0], env.clinic.patients[1]))
    env.now = MONDAY.replace(day=2, hour=6, minute=1)
    before = env.counts()
    r = env.op("patient1", f"Appointment/{appt['id']}/$cancel")
    _refused(env, r, 422, "APPT-CANCEL-CUTOFF", before)
    # The desk may still cancel (the patient phoned in).
    assert env.op("nurse", f"Appointment/{appt['id']}/$cancel").status_code == 200
    assert env.read(f"Slot/{slots[0]['id']}")["status"] == "free"


def test_rescheduling_moves_the_booking_in_one_step(env: Env) -> None:
    slots = env.generate("2027-03-02")
    p = env.clinic.patients[0]
    appt = _out(env.book("patient0", slots[0], p))
    r = env.op(
        "patient0",
        f"Appointment/{appt['id']}/$reschedule",
        slot=("Reference", {"reference": f"Slot/{slots[1]['id']}"}),
    )
    assert r.status_code == 200, r.text
    assert _out(r)["status"] == "booked"
    assert _out(r, "cancelled")["status"] == "cancelled"
    assert env.read(f"Slot/{slots[0]['id']}")["status"] == "free"
    assert env.read(f"Slot/{slots[1]['id']}")["status"] == "busy"


def test_rescheduling_to_a_full_slot_keeps_the_old_booking(env: Env) -> None:
    slots = env.generate("2027-03-02")
    appt = _out(env.book("patient0", slots[0], env.clinic.patients[0]))
    assert env.book("patient1", slots[1], env.clinic.patients[1]).status_code == 200
    before = env.counts()
    r = env.op(
        "patient0",
        f"Appointment/{appt['id']}/$reschedule",
        slot=("Reference", {"reference": f"Slot/{slots[1]['id']}"}),
    )
    _refused(env, r, 409, "APPT-SLOT-FULL", before)
    assert env.read(f"Appointment/{appt['id']}")["status"] == "booked"
    assert env.read(f"Slot/{slots[0]['id']}")["status"] == "busy"


def test_a_booking_that_fails_half_way_leaves_the_slot_free(env: Env, monkeypatch) -> None:  # noqa: ANN001
    from carenet.domains.scheduling import service

    slot = env.generate("2027-03-02")[0]
    before = env.counts()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the SMS outbox is down")

    # The slot's new version is written before the message is queued: the failure comes after.
    monkeypatch.setattr(service.SchedulingContext, "notify", broken)
    r = env.book("patient0", slot, env.clinic.patients[0])
    assert r.status_code == 500
    assert "incident" in r.json()["issue"][0]["diagnostics"]
    assert env.counts() == before
    assert env.read(f"Slot/{slot['id']}")["status"] == "free"
    assert env.read(f"Slot/{slot['id']}")["meta"]["versionId"] == "1"


def test_stopping_a_clinic_cancels_its_bookings_and_tells_the_patients(env: Env) -> None:
    slots = env.generate("2027-03-02")
    p0, p1 = env.clinic.patients[:2]
    a0 = _out(env.book("patient0", slots[0], p0))
    a1 = _out(env.book("patient1", slots[7], p1))
    r = env.op(
        "institution_admin",
        f"Schedule/{env.clinic.ids['schedule']}/$stop-clinic",
        start=("DateTime", "2027-03-02T08:00:00+08:00"),
        end=("DateTime", "2027-03-02T10:00:00+08:00"),
        reason="医生外出会诊",
    )
    assert r.status_code == 200, r.text
    out = {p["name"]: p for p in r.json()["parameter"]}
    assert out["closed"]["valueInteger"] == 4
    assert env.read(f"Appointment/{a0['id']}")["status"] == "cancelled"
    assert env.read(f"Appointment/{a1['id']}")["status"] == "booked"  # 11:30, after the stop
    assert [env.read(f"Slot/{s['id']}")["status"] for s in slots] == ["busy-unavailable"] * 4 + [
        "free",
        "free",
        "free",
        "busy",
    ]
    assert env.messages(p0) == ["appointment-booked", "clinic-stopped"]
    assert env.messages(p1) == ["appointment-booked"]
    before = env.counts()
    r = env.book("patient2", slots[1], env.clinic.patients[2])
    assert r.status_code == 409
    assert outcome_codes(r) == ["APPT-SLOT-UNAVAILABLE"]
    assert env.counts() == before


def test_generating_twice_adds_nothing_and_holidays_get_no_slots(env: Env) -> None:
    assert len(env.generate("2027-03-02", days=3)) == 24
    assert env.generate("2027-03-02", days=3) == []
    sched_id = env.clinic.ids["schedule"]
    schedule = env.read(f"Schedule/{sched_id}")
    from carenet.domains.scheduling.model import HOLIDAY

    schedule["extension"].append({"url": HOLIDAY, "valueDate": "2027-03-06"})
    r = env.client.put(
        f"/fhir/Schedule/{sched_id}", json=schedule, headers=env.headers("institution_admin")
    )
    assert r.status_code == 200, r.text
    slots = env.generate("2027-03-05", days=3)
    assert sorted({s["start"][:10] for s in slots}) == ["2027-03-05", "2027-03-07"]


def test_an_invalid_session_template_is_refused_with_its_code(env: Env) -> None:
    sched_id = env.clinic.ids["schedule"]
    schedule = env.read(f"Schedule/{sched_id}")
    from carenet.domains.scheduling.model import SESSION

    session = next(e for e in schedule["extension"] if e["url"] == SESSION)
    for part in session["extension"]:
        if part["url"] == "slotMinutes":
            part["valuePositiveInt"] = 45
    r = env.client.put(
        f"/fhir/Schedule/{sched_id}", json=schedule, headers=env.headers("institution_admin")
    )
    assert r.status_code == 200, r.text
    before = env.counts()
    r = env.op("institution_admin", f"Schedule/{sched_id}/$generate", start=("Date", "2027-03-02"))
    assert r.status_code == 422, r.text
    assert "SCHED-SLOT-LENGTH" in outcome_codes(r)
    assert env.counts() == before


@pytest.mark.parametrize(
    "who", ["patient0", "doctor", "nurse", "institution_admin", "regional_admin"]
)
def test_nobody_but_a_backend_service_writes_slots_or_appointments_directly(
    env: Env, who: str
) -> None:
    slot = env.generate("2027-03-02")[0]
    before = env.counts()
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [
            {"actor": {"reference": f"Patient/{env.clinic.patients[0]}"}, "status": "accepted"}
        ],
    }
    r = env.client.post("/fhir/Appointment", json=body, headers=env.headers(who))
    assert r.status_code == 403, r.text
    r = env.client.put(
        f"/fhir/Slot/{slot['id']}", json={**slot, "status": "free"}, headers=env.headers(who)
    )
    assert r.status_code == 403, r.text
    assert env.counts() == before


def test_a_patient_may_not_publish_slots_or_stop_a_clinic(env: Env) -> None:
    before = env.counts()
    sched = env.clinic.ids["schedule"]
    r = env.op("patient0", f"Schedule/{sched}/$generate", start=("Date", "2027-03-02"))
    assert r.status_code == 403
    assert outcome_codes(r) == ["ACCESS-DENIED"]
    r = env.op(
        "doctor2",
        f"Schedule/{sched}/$stop-clinic",
        start=("DateTime", "2027-03-02T08:00:00+08:00"),
        end=("DateTime", "2027-03-02T09:00:00+08:00"),
        reason="x",
    )
    assert r.status_code == 403
    assert env.counts() == before


def test_bad_parameters_are_coded_errors(env: Env) -> None:
    slot = env.generate("2027-03-02")[0]
    before = env.counts()
    r = env.op(
        "patient0", "Appointment/$book", slot=("Reference", {"reference": f"Slot/{slot['id']}"})
    )
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Parameters.parameter.where(name='patient')"]
    r = env.op(
        "patient0",
        "Appointment/$book",
        slot=("Reference", {"reference": "Patient/x"}),
        patient=("Reference", {"reference": "Patient/x"}),
    )
    assert r.status_code == 400
    r = env.book("patient0", slot, env.clinic.patients[0], channel="fax")
    assert r.status_code == 400
    r = env.client.post(
        "/fhir/Appointment/$book", json={"resourceType": "Patient"}, headers=env.headers("patient0")
    )
    assert r.status_code == 400
    r = env.client.get("/fhir/Appointment/$book", headers=env.headers("patient0"))
    assert r.status_code == 405
    r = env.op("patient0", "Appointment/$nosuch")
    assert r.status_code == 501 or r.status_code == 400 or r.status_code == 404
    assert env.counts() == before


def test_a_guardian_books_for_their_child_and_the_child_is_booked(env: Env) -> None:
    from datetime import date

    from carenet.access.guardians import bind_guardian
    from carenet.access.realname import resolve_patient
    from carenet.fhir.identifiers import make_resident_id

    slots = env.generate("2027-03-02")
    rid = make_resident_id("330122", date(2019, 6, 1), 15)
    with env.store.unit_of_work() as uow:
        conn, repo = uow.repo.conn, uow.repo
        child = resolve_patient(conn, repo, env.ctx, "王小明", rid).patient_ref
        mother = env.clinic.accounts["patient0"]
        bind_guardian(conn, repo, env.ctx, mother, child, "MTH", guardian_consent=True)
        uow.commit()
    r = env.book("patient0", slots[0], child.split("/")[1])
    assert r.status_code == 200, r.text
    assert child in [p["actor"]["reference"] for p in _out(r)["participant"]]
    # The booking is the child's: the mother may still book the same doctor that day herself.
    assert env.book("patient0", slots[1], env.clinic.patients[0]).status_code == 200
    # Another patient's guardian-less account still cannot book for the child.
    assert env.book("patient1", slots[2], child.split("/")[1]).status_code == 404
