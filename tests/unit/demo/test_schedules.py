"""The demo schedules' choices: which hospitals and doctors, which weekly sessions, which slots
are booked and for whom. Pure: no database."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, time, timedelta

import pytest

from carenet.demo import schedules as demo
from carenet.demo.region import DEMO_TAG
from carenet.demo.schedules import DemoPatient, DoctorRole
from carenet.domains.scheduling import model
from carenet.domains.scheduling.sessions import (
    ReleasePolicy,
    check_overlaps,
    validate_template,
)
from carenet.fhir import identifiers as ids
from carenet.fhir.validation import assert_valid


def organization(*levels: str) -> dict[str, object]:
    return {
        "resourceType": "Organization",
        "type": [
            {"coding": [{"system": "http://example.org/other", "code": "3A"}]},
            *({"coding": [{"system": ids.HOSPITAL_LEVEL, "code": lv}]} for lv in levels),
        ],
    }


def role(
    key: str,
    org: str = "h1",
    *,
    grade: int = 3,
    practitioner: str | None = None,
    senior: bool = False,
    division: str = "330100",
) -> DoctorRole:
    return DoctorRole(
        role_id=f"id-{key}",
        key=key,
        organization_id=org,
        grade=grade,
        division=division,
        practitioner_id=practitioner or f"p-{key}",
        name=f"医生{key}",
        senior=senior,
    )


@pytest.mark.parametrize(
    ("levels", "grade"),
    [(("3A",), 3), (("3",), 3), (("2A",), 2), (("2C",), 2), (("1",), 1), (("unrated",), None)],
)
def test_the_grade_comes_from_the_hospital_level_type_only(levels, grade) -> None:
    assert demo.hospital_grade(organization(*levels)) == grade


def test_an_organization_without_a_level_has_no_grade() -> None:
    assert demo.hospital_grade(organization()) is None
    assert demo.hospital_grade({"resourceType": "Organization"}) is None


def test_doctors_born_by_the_end_of_1980_are_senior_and_younger_ones_are_not() -> None:
    assert demo.is_senior({"birthDate": "1980-12-31"})
    assert not demo.is_senior({"birthDate": "1981-01-01"})
    assert not demo.is_senior({})
    assert not demo.is_senior({"birthDate": "1970"})  # a bare year says too little


@pytest.mark.parametrize(
    ("division", "prefix"), [("330100", "3301"), ("330122", "330122"), ("330000", "33")]
)
def test_a_city_hospital_serves_its_city_and_a_county_hospital_its_county(division, prefix) -> None:
    assert demo.catchment(division) == prefix


def test_a_senior_doctor_holds_an_expert_clinic_every_weekday_morning_and_two_afternoons() -> None:
    templates = demo.session_templates(0, senior=True, visiting=False)
    mornings = [t for t in templates if (t.start, t.end) == (time(8), time(12))]
    afternoons = [t for t in templates if (t.start, t.end) == (time(14), time(17))]
    assert sorted(t.weekday for t in mornings) == [1, 2, 3, 4, 5]
    assert len(afternoons) == 2 and len({t.weekday for t in afternoons}) == 2
    assert len(templates) == 7
    for t in templates:
        assert (t.service_type, t.fee_fen, t.slot_minutes, t.capacity) == ("expert", 5000, 15, 1)
        assert t.reserved == {"onsite": 2, "referral": 1, "contract": 1}


def test_other_doctors_hold_a_general_clinic_of_half_hour_slots_for_two() -> None:
    for t in demo.session_templates(3, senior=False, visiting=False):
        assert (t.service_type, t.fee_fen, t.slot_minutes, t.capacity) == ("general", 1000, 30, 2)


def test_a_visiting_doctor_holds_one_saturday_morning_session() -> None:
    (t,) = demo.session_templates(5, senior=True, visiting=True)
    assert (t.weekday, t.start, t.end, t.service_type) == (6, time(8), time(12), "expert")


@pytest.mark.parametrize("senior", [True, False])
@pytest.mark.parametrize("visiting", [True, False])
def test_every_template_set_is_valid_and_free_of_overlaps(senior, visiting) -> None:
    for index in range(10):
        templates = demo.session_templates(index, senior=senior, visiting=visiting)
        assert [f for i, t in enumerate(templates) for f in validate_template(t, i)] == []
        assert check_overlaps(templates) == []


def test_afternoons_are_spread_over_the_week_by_the_doctors_place() -> None:
    afternoon_days = {
        frozenset(
            t.weekday
            for t in demo.session_templates(i, senior=False, visiting=False)
            if t.start == time(14)
        )
        for i in range(5)
    }
    assert len(afternoon_days) == 5


def test_a_doctor_at_two_hospitals_is_at_home_at_the_higher_graded_one() -> None:
    city = role("a", "h3", grade=3, practitioner="p1")
    county = role("b", "h2", grade=2, practitioner="p1")
    single = role("c", "h2", grade=2, practitioner="p2")
    marked = {r.key: r.visiting for r in demo.mark_visiting([county, city, single])}
    assert marked == {"a": False, "b": True, "c": False}


def test_two_roles_at_hospitals_of_one_grade_make_the_lower_key_the_home() -> None:
    marked = demo.mark_visiting(
        [role("z", "h1", practitioner="p"), role("y", "h2", practitioner="p")]
    )
    assert {r.key: r.visiting for r in marked} == {"y": False, "z": True}


def test_at_most_n_doctors_per_hospital_are_chosen_visiting_ones_first() -> None:
    home = [role(f"k{i}", "h1") for i in range(6)]
    visiting = replace(role("k8", "h1"), visiting=True)
    county = role("k9", "h2", grade=2)
    chosen = demo.choose_roles([*home, visiting, county], 3)
    assert [(r.organization_id, r.key) for r in chosen] == [
        ("h1", "k0"),
        ("h1", "k1"),
        ("h1", "k8"),
        ("h2", "k9"),
    ]
    assert demo.choose_roles([county, visiting, *reversed(home)], 3) == chosen


def test_the_schedule_is_valid_fhir_owned_by_the_hospital_with_its_sessions() -> None:
    r = replace(
        role("1330100@123", "org-1", senior=True),
        role_id="role-1",
        location_id="loc-1",
        specialty=({"coding": [{"code": "03"}], "text": "内科"},),
    )
    templates = demo.session_templates(0, senior=True, visiting=False)
    release = ReleasePolicy(days_before=7, at=time(8), pool_hours_before=24)
    schedule = demo.schedule_resource(r, templates, release)
    assert_valid(schedule, expected_type="Schedule")
    assert schedule["identifier"] == [{"system": demo.SCHEDULE_ID, "value": "1330100@123"}]
    assert model.owner_of(schedule) == "org-1"
    assert DEMO_TAG in schedule["meta"]["tag"]
    assert [a["reference"] for a in schedule["actor"]] == [
        "PractitionerRole/role-1",
        "Location/loc-1",
    ]
    assert schedule["specialty"] == [{"coding": [{"code": "03"}], "text": "内科"}]
    assert schedule["comment"] == "内科专家门诊"
    parsed, findings = model.session_templates(schedule)
    assert (parsed, findings) == (templates, [])
    assert model.release_policy(schedule, ReleasePolicy(days_before=1)) == release


def test_hospitals_book_their_own_residents_and_everyone_when_none_live_there() -> None:
    patients = [
        DemoPatient("p3", "3", "330324"),
        DemoPatient("p1", "1", "330122"),
        DemoPatient("p2", "2", "330127"),
    ]
    assert [p.key for p in demo.local_patients(patients, "330100")] == ["1", "2"]
    assert [p.key for p in demo.local_patients(patients, "330127")] == ["2"]
    assert [p.key for p in demo.local_patients(patients, "110105")] == ["1", "2", "3"]


def test_the_first_clinic_days_are_the_first_days_with_slots() -> None:
    monday = date(2027, 3, 1)
    days = [monday + timedelta(days=d) for d in (5, 0, 0, 2, 6, 3)]
    assert demo.clinic_days(days, 3) == {
        monday,
        monday + timedelta(days=2),
        monday + timedelta(days=3),
    }
    assert demo.clinic_days([], 3) == set()


def test_the_same_seed_and_slot_give_the_same_patients_and_another_seed_may_not() -> None:
    pool = [DemoPatient(f"p{i}", f"{i:03d}", "330122") for i in range(50)]

    def picks(seed: int) -> list[list[str]]:
        return [
            [
                p.patient_id
                for p in demo.booking_candidates(
                    demo.slot_rng(seed, f"role{k}", "2027-03-01T08:00:00+08:00", "general"), pool
                )
            ]
            for k in range(40)
        ]

    assert picks(2026) == picks(2026)
    assert any(picks(2026))
    assert picks(2026) != picks(2027)


def test_about_a_quarter_of_the_slots_get_up_to_four_distinct_local_candidates() -> None:
    pool = [DemoPatient(f"p{i}", f"{i:03d}", "330122") for i in range(10)]
    tried = [
        demo.booking_candidates(demo.slot_rng(2026, "r", f"slot-{i}", "expert"), pool)
        for i in range(2000)
    ]
    chosen = [c for c in tried if c]
    assert 0.2 <= len(chosen) / len(tried) <= 0.3
    for candidates in chosen:
        assert len(candidates) == demo.CANDIDATES_PER_SLOT
        assert len(set(candidates)) == len(candidates) and set(candidates) <= set(pool)


def test_nobody_is_chosen_from_an_empty_pool_or_with_no_share() -> None:
    assert demo.booking_candidates(random.Random(1), []) == []
    pool = [DemoPatient("p", "1", "330122")]
    assert all(demo.booking_candidates(random.Random(i), pool, 0.0) == [] for i in range(50))
    assert demo.booking_candidates(random.Random(1), pool, 1.0) == pool
