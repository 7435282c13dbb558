"""The booking benchmark's pure parts: the slots it publishes, the crowd per slot, the
identities it seeds, how it reads responses, and the outcome check that must catch every way a
storm can go wrong."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from bench.booking import (
    FULL,
    QUOTA,
    SLOTS_PER_DAY,
    Attempt,
    bookings,
    check_outcome,
    days_for,
    identity,
    quota_counts,
    refusal_codes,
    session_templates,
    tally,
    wanted_slot,
)

from carenet.access.rules import normalise_phone
from carenet.domains.scheduling.sessions import generate_slots, validate_template
from carenet.fhir.identifiers import validate_resident_id

TZ = ZoneInfo("Asia/Shanghai")


def slot(sid: str, booked: int, capacity: int = 1, status: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": sid,
        "status": status or ("busy" if booked >= capacity else "free"),
        "extension": [
            {
                "url": QUOTA,
                "extension": [
                    {"url": "channel", "valueCode": "online"},
                    {"url": "capacity", "valueUnsignedInt": capacity},
                    {"url": "booked", "valueUnsignedInt": booked},
                ],
            }
        ],
    }


def appointment(aid: str, patient: str, sid: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": aid,
        "status": "booked",
        "slot": [{"reference": f"Slot/{sid}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}},
            {"actor": {"reference": "PractitionerRole/r1"}},
        ],
    }


def storm_of_two_slots() -> tuple[list[Attempt], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Four patients for two single-place slots: p0 and p1 win, p2 and p3 are refused."""
    a0, a1 = appointment("a0", "p0", "s0"), appointment("a1", "p1", "s1")
    attempts = [
        Attempt("Patient/p0", "Slot/s0", 200, 10.0, appointment=a0),
        Attempt("Patient/p1", "Slot/s1", 200, 12.0, appointment=a1),
        Attempt("Patient/p2", "Slot/s0", 409, 3.0, (FULL,)),
        Attempt("Patient/p3", "Slot/s1", 409, 4.0, (FULL,)),
    ]
    return attempts, {"Slot/s0": slot("s0", 1), "Slot/s1": slot("s1", 1)}, [a0, a1]


def test_the_published_week_gives_enough_released_single_place_slots_within_a_few_days() -> None:
    templates = session_templates()
    assert all(validate_template(t, i) == [] for i, t in enumerate(templates))
    for wanted in (1, SLOTS_PER_DAY, SLOTS_PER_DAY + 1, 100, 300):
        specs = generate_slots(
            templates, first_day=date(2026, 11, 23), days=days_for(wanted), holidays=(), tz=TZ
        )
        assert len(specs) >= wanted
        assert days_for(wanted) <= 7  # all released (7 days before) on the first day
        assert {dict(s.quotas)["online"] for s in specs} == {1}
    assert days_for(100) == 3 and SLOTS_PER_DAY == 48


def test_every_slot_gets_the_same_crowd() -> None:
    crowd = Counter(wanted_slot(i, 100) for i in range(1000))
    assert set(crowd) == set(range(100)) and set(crowd.values()) == {10}


def test_seeded_identities_are_valid_and_distinct() -> None:
    people = [identity(k, base=99_999_000) for k in range(3000)]
    assert len({p[0] for p in people}) == len({p[1] for p in people}) == 3000
    for phone, rid, name in people[:200] + people[-200:]:
        assert normalise_phone(phone) == phone
        assert validate_resident_id(rid) == []
        assert len(name) == 3


def test_each_patient_sends_one_booking_for_their_slot_in_a_shuffled_but_repeatable_order() -> None:
    patients = [(f"p{i}", f"token{i}") for i in range(20)]
    sent = bookings(patients, ["s0", "s1", "s2", "s3"], seed=1)
    assert sorted(b.patient for b in sent) == sorted(f"Patient/p{i}" for i in range(20))
    assert [b.patient for b in sent] != [f"Patient/p{i}" for i in range(20)]
    assert [b.patient for b in sent] == [b.patient for b in bookings(patients, list("0123"), 1)]
    for b in sent:
        i = int(b.patient.removeprefix("Patient/p"))
        assert b.slot == f"Slot/s{i % 4}"
        assert b.headers["Authorization"] == f"Bearer token{i}"
        assert orjson.loads(b.body)["parameter"] == [
            {"name": "slot", "valueReference": {"reference": b.slot}},
            {"name": "patient", "valueReference": {"reference": b.patient}},
        ]


def test_refusal_codes_are_read_from_the_operation_outcome() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": "conflict", "details": {"coding": [{"code": FULL}]}},
            {"severity": "error", "code": "processing"},
        ],
    }
    assert refusal_codes(outcome) == (FULL,)
    assert refusal_codes(None) == () and refusal_codes({"issue": []}) == ()


def test_quota_counts_sum_over_channels() -> None:
    s = slot("s0", 1, capacity=2)
    s["extension"].append({**s["extension"][0]})
    assert quota_counts(s) == (2, 4)
    assert quota_counts({"resourceType": "Slot"}) == (0, 0)


def test_tally_separates_bookings_slot_full_other_refusals_and_errors() -> None:
    attempts, _, _ = storm_of_two_slots()
    attempts += [
        Attempt("Patient/p4", "Slot/s0", 422, 5.0, ("APPT-DUPLICATE-DAY",)),
        Attempt("Patient/p5", "Slot/s0", 500, 5.0),
        Attempt("Patient/p6", "Slot/s0", 0, 5.0, error="ReadTimeout"),
    ]
    t = tally(attempts)
    assert t.booked == 2
    assert t.refusals == Counter({FULL: 2, "APPT-DUPLICATE-DAY": 1})
    assert t.errors == Counter({"HTTP 500": 1, "ReadTimeout": 1})
    assert t.other == 3


def test_a_correct_storm_has_no_problems() -> None:
    assert check_outcome(*storm_of_two_slots()) == []


def test_an_overbooked_slot_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    extra = appointment("a2", "p2", "s0")
    attempts[2] = Attempt("Patient/p2", "Slot/s0", 200, 3.0, appointment=extra)
    slots["Slot/s0"] = slot("s0", 2, capacity=1)
    assert check_outcome(attempts, slots, [*active, extra]) == [
        "Slot/s0: 2 active appointments for 1 places"
    ]


def test_a_quota_count_that_disagrees_with_the_appointments_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    slots["Slot/s1"] = slot("s1", 0, status="busy")
    assert check_outcome(attempts, slots, active) == [
        "Slot/s1: quota says 0 booked, 1 active appointments"
    ]


def test_a_place_left_free_while_patients_were_refused_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    attempts[1] = Attempt("Patient/p1", "Slot/s1", 409, 4.0, (FULL,))
    slots["Slot/s1"] = slot("s1", 0)
    assert check_outcome(attempts, slots, active[:1]) == [
        "Slot/s1: 0 booked of 1 places wanted by 2"
    ]


def test_a_full_slot_still_marked_free_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    slots["Slot/s0"] = slot("s0", 1, status="free")
    assert check_outcome(attempts, slots, active) == ["Slot/s0: full but status 'free'"]


def test_a_patient_holding_two_bookings_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    twice = appointment("a1", "p0", "s1")
    attempts[1] = Attempt("Patient/p1", "Slot/s1", 200, 12.0, appointment=twice)
    assert check_outcome(attempts, slots, [active[0], twice]) == [
        "1 patients hold more than one booking: ['Patient/p0']",
        "Appointment/a1 is not for Patient/p1 in Slot/s1",
    ]


def test_a_booking_answered_but_not_stored_or_stored_but_not_answered_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    lost = appointment("a9", "p1", "s1")
    attempts[1] = Attempt("Patient/p1", "Slot/s1", 200, 12.0, appointment=lost)
    assert check_outcome(attempts, slots, active) == [
        "2 bookings answered 200, 2 stored; 1 answered but not stored, 1 stored but not answered"
    ]


def test_an_active_booking_in_a_slot_outside_the_storm_is_reported() -> None:
    attempts, slots, active = storm_of_two_slots()
    stray = appointment("a7", "p3", "elsewhere")
    problems = check_outcome(attempts, slots, [*active, stray])
    assert problems[0] == "active appointments in slots outside the storm: ['Slot/elsewhere']"
