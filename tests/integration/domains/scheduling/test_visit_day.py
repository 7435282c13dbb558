"""The day of the visit: check-in opens a queue, the doctor calls the next patient, reminders go
out through the outbox, no-shows count towards a suspension; on both stores."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.integration.domains.scheduling.conftest import MONDAY, Env, outcome_codes


def _value(r: Any, name: str) -> Any:
    for p in r.json()["parameter"]:
        if p["name"] == name:
            return p.get("resource") or next(v for k, v in p.items() if k.startswith("value"))
    return None


def _booked(env: Env, n: int, day: str = "2027-03-02") -> list[dict]:
    slots = env.generate(day)
    out = []
    for i in range(n):
        r = env.book(f"patient{i}", slots[i], env.clinic.patients[i])
        assert r.status_code == 200, r.text
        out.append(_value(r, "appointment"))
    return out


def _encounter(env: Env, appointment_id: str) -> dict:
    r = env.client.get(
        "/fhir/Encounter",
        params={"appointment": f"Appointment/{appointment_id}"},
        headers=env.headers("system"),
    )
    entries = r.json().get("entry", [])
    assert len(entries) == 1, r.text
    return dict(entries[0]["resource"])


def test_check_in_on_the_day_gives_a_queue_number_and_opens_an_encounter(env: Env) -> None:
    a0, a1 = _booked(env, 2)
    env.now = MONDAY.replace(day=2, hour=7, minute=40)
    r = env.op("patient1", f"Appointment/{a1['id']}/$checkin")
    assert r.status_code == 200, r.text
    assert (_value(r, "number"), _value(r, "position"), _value(r, "ahead")) == (1, 1, 0)
    assert _value(r, "appointment")["status"] == "arrived"
    enc = _encounter(env, a1["id"])
    assert enc["status"] == "arrived"
    assert enc["subject"] == {"reference": f"Patient/{env.clinic.patients[1]}"}
    r = env.op("nurse", f"Appointment/{a0['id']}/$checkin")  # the desk checks the other in
    assert (_value(r, "number"), _value(r, "position")) == (2, 2)
    r = env.client.get(f"/fhir/Appointment/{a0['id']}/$queue", headers=env.headers("patient0"))
    assert r.status_code == 200, r.text
    assert (_value(r, "position"), _value(r, "ahead"), _value(r, "called")) == (2, 1, False)


def test_check_in_is_refused_on_another_day_after_the_slot_and_twice(env: Env) -> None:
    (a0,) = _booked(env, 1)
    before = env.counts()
    r = env.op("patient0", f"Appointment/{a0['id']}/$checkin")  # the day before
    assert r.status_code == 422
    assert outcome_codes(r) == ["APPT-CHECKIN-WRONG-DAY"]
    env.now = MONDAY.replace(day=2, hour=8, minute=31)  # the 08:00 slot ended at 08:30
    r = env.op("patient0", f"Appointment/{a0['id']}/$checkin")
    assert outcome_codes(r) == ["APPT-CHECKIN-TOO-LATE"]
    assert env.counts() == before
    env.now = MONDAY.replace(day=2, hour=8, minute=29)
    assert env.op("patient0", f"Appointment/{a0['id']}/$checkin").status_code == 200
    r = env.op("patient0", f"Appointment/{a0['id']}/$checkin")
    assert r.status_code == 422
    assert outcome_codes(r) == ["APPT-WRONG-STATE"]


def test_the_doctor_calls_patients_in_check_in_order_with_reminders(env: Env) -> None:
    appts = _booked(env, 3)
    env.now = MONDAY.replace(day=2, hour=7, minute=30)
    for who, a in (("patient2", appts[2]), ("patient0", appts[0]), ("patient1", appts[1])):
        env.now += timedelta(minutes=1)
        assert env.op(who, f"Appointment/{a['id']}/$checkin").status_code == 200
    role = env.clinic.ids["role:doctor"]
    r = env.op("doctor", f"PractitionerRole/{role}/$call-next")
    assert r.status_code == 200, r.text
    first = _value(r, "appointment")
    assert first["id"] == appts[2]["id"]
    assert _encounter(env, appts[2]["id"])["status"] == "in-progress"
    assert env.messages(env.clinic.patients[2], "queue-called") == ["queue-called"]
    r = env.client.get(
        f"/fhir/Appointment/{appts[1]['id']}/$queue", headers=env.headers("patient1")
    )
    assert (_value(r, "position"), _value(r, "ahead")) == (2, 1)
    # The second call ends the first visit.
    r = env.op("doctor", f"PractitionerRole/{role}/$call-next")
    assert _value(r, "appointment")["id"] == appts[0]["id"]
    assert env.read(f"Appointment/{appts[2]['id']}")["status"] == "fulfilled"
    assert _encounter(env, appts[2]["id"])["status"] == "finished"
    env.op("doctor", f"PractitionerRole/{role}/$call-next")
    r = env.op("doctor", f"PractitionerRole/{role}/$call-next")
    assert r.status_code == 200
    assert _value(r, "waiting") is False
    assert [env.read(f"Appointment/{a['id']}")["status"] for a in appts] == ["fulfilled"] * 3


def test_a_waiting_reminder_goes_to_whoever_becomes_three_from_the_front(env: Env) -> None:
    # Five patients in one queue: seed two more verified patients through the same clinic.
    from tests.integration.domains.scheduling.world import seed

    more = seed(env.store, env.ctx, patients=2)
    env.clinic.tokens.update(
        {"patient3": more.tokens["patient0"], "patient4": more.tokens["patient1"]}
    )
    env.clinic.patients += more.patients
    env.clinic.phones.update(more.phones)
    appts = _booked(env, 5)
    env.now = MONDAY.replace(day=2, hour=7, minute=30)
    for i, a in enumerate(appts):
        env.now += timedelta(minutes=1)
        assert env.op(f"patient{i}", f"Appointment/{a['id']}/$checkin").status_code == 200
    # At check-in, the fourth (3 ahead) was reminded at once; nobody else.
    reminded = [p for p in env.clinic.patients[:5] if env.messages(p, "queue-ahead")]
    assert reminded == [env.clinic.patients[3]]
    env.op("doctor", f"PractitionerRole/{env.clinic.ids['role:doctor']}/$call-next")
    # Now the fifth has 3 ahead (2nd, 3rd, 4th waiting... and the 1st in the room is not ahead).
    reminded = [p for p in env.clinic.patients[:5] if env.messages(p, "queue-ahead")]
    assert reminded == [env.clinic.patients[3], env.clinic.patients[4]]
    assert env.messages(env.clinic.patients[3], "queue-ahead") == ["queue-ahead"]


def test_a_doctor_calls_only_their_own_queue(env: Env) -> None:
    before = env.counts()
    r = env.op("doctor2", f"PractitionerRole/{env.clinic.ids['role:doctor']}/$call-next")
    assert r.status_code == 404
    r = env.op("patient0", f"PractitionerRole/{env.clinic.ids['role:doctor']}/$call-next")
    assert r.status_code == 403
    assert env.counts() == before


def test_no_shows_are_marked_after_the_slot_and_three_suspend_online_booking(env: Env) -> None:
    p = env.clinic.patients[0]
    days = ["2027-03-02", "2027-03-03", "2027-03-04", "2027-03-05"]
    slots = {d: env.generate(d)[0] for d in days}
    appts = []
    for d in days[:3]:
        r = env.book("patient0", slots[d], p)
        assert r.status_code == 200, r.text
        appts.append(_value(r, "appointment"))
    before = env.counts()
    r = env.op("nurse", f"Appointment/{appts[0]['id']}/$noshow")
    assert r.status_code == 422
    assert outcome_codes(r) == ["APPT-NOSHOW-TOO-EARLY"]
    assert env.counts() == before
    r = env.op("patient0", f"Appointment/{appts[0]['id']}/$noshow")
    assert r.status_code == 403
    env.now = MONDAY.replace(day=4, hour=12)
    for a in appts:
        r = env.op("nurse", f"Appointment/{a['id']}/$noshow")
        assert r.status_code == 200, r.text
        assert _value(r, "appointment")["status"] == "noshow"
    before = env.counts()
    r = env.book("patient0", slots["2027-03-05"], p)
    assert r.status_code == 422
    assert outcome_codes(r) == ["APPT-SUSPENDED"]
    assert env.counts() == before
    # The desk may still register the patient on site (the suspension is of online booking);
    # every place is online, but the pool opened 24 hours before the slot.
    assert env.book("nurse", slots["2027-03-05"], p).status_code == 200


def test_day_before_reminders_go_out_once(env: Env) -> None:
    appts = _booked(env, 2)
    r = env.op("nurse", f"Appointment/{appts[1]['id']}/$cancel")
    assert r.status_code == 200
    sent = _remind(env, "2027-03-02")
    assert sent == 1
    assert _remind(env, "2027-03-02") == 0
    assert env.messages(env.clinic.patients[0], "appointment-reminder") == ["appointment-reminder"]
    assert env.messages(env.clinic.patients[1], "appointment-reminder") == []


def _remind(env: Env, day: str) -> int:
    from datetime import date

    from carenet.domains.scheduling.jobs import remind_day_before

    settings = env.client.app.state.settings
    return remind_day_before(
        env.store, settings, env.ctx.notifier, date.fromisoformat(day), now=env.now
    )
