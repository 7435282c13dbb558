"""Session templates (出诊排班模板): validation, overlaps, and the slots, quotas and release times
they generate."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carenet.domains.scheduling.rules import CHANNELS
from carenet.domains.scheduling.sessions import (
    ONLINE,
    RESERVABLE_CHANNELS,
    SLOT_LENGTHS,
    ReleasePolicy,
    SessionTemplate,
    SlotSpec,
    check_overlaps,
    generate_slots,
    validate_template,
)

TZ = ZoneInfo("Asia/Shanghai")
MONDAY = date(2026, 3, 2)
WEDNESDAY = date(2026, 3, 4)


#: Monday 08:00-10:00 in 30-minute slots of 2 patients: 4 slots, 8 places.
MORNING = SessionTemplate(weekday=1, start=time(8, 0), end=time(10, 0), slot_minutes=30, capacity=2)


def morning(**changes: Any) -> SessionTemplate:
    return replace(MORNING, **changes)


def slots_of(
    *templates: SessionTemplate, days: int = 1, first_day: date = MONDAY
) -> list[SlotSpec]:
    return generate_slots(templates, first_day=first_day, days=days, holidays=(), tz=TZ)


def quotas(slots: list[SlotSpec]) -> list[dict[str, int]]:
    return [dict(s.quotas) for s in slots]


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


# --- validate_template -----------------------------------------------------------------------


def test_the_channel_names_are_those_of_the_booking_rules() -> None:
    assert (ONLINE, *RESERVABLE_CHANNELS) == CHANNELS


def test_a_sound_template_has_no_findings() -> None:
    assert validate_template(morning(reserved={"onsite": 2, "referral": 1}, fee_fen=500)) == []


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"weekday": 0}, "SCHED-WEEKDAY"),
        ({"weekday": 8}, "SCHED-WEEKDAY"),
        ({"slot_minutes": 20}, "SCHED-SLOT-LENGTH"),
        ({"slot_minutes": 120, "end": time(12, 0)}, "SCHED-SLOT-LENGTH"),
        ({"slot_minutes": 0}, "SCHED-SLOT-LENGTH"),
        ({"capacity": 0}, "SCHED-CAPACITY"),
        ({"end": time(8, 0)}, "SCHED-TIMES"),
        ({"end": time(7, 0)}, "SCHED-TIMES"),
        ({"end": time(9, 50)}, "SCHED-TIMES"),  # 110 minutes are not whole 30-minute slots
        ({"reserved": {"online": 1}}, "SCHED-QUOTA-UNKNOWN-CHANNEL"),
        ({"reserved": {"vip": 1}}, "SCHED-QUOTA-UNKNOWN-CHANNEL"),
        ({"reserved": {"onsite": -1}}, "SCHED-QUOTA-NEGATIVE"),
        ({"reserved": {"onsite": 5, "contract": 4}}, "SCHED-QUOTA-EXCEEDS"),
        ({"fee_fen": -1}, "SCHED-FEE"),
    ],
)
def test_each_problem_of_a_template_has_its_own_code(changes: dict[str, Any], code: str) -> None:
    [finding] = validate_template(morning(**changes), index=3)
    assert (finding.code, finding.severity, finding.expression) == (
        code,
        "error",
        "Schedule.extension[3]",
    )
    assert finding.message_zh and finding.message_en


@pytest.mark.parametrize("weekday", range(1, 8))
def test_every_iso_weekday_is_valid(weekday: int) -> None:
    assert validate_template(morning(weekday=weekday)) == []


@pytest.mark.parametrize("minutes", SLOT_LENGTHS)
def test_every_allowed_slot_length_is_valid(minutes: int) -> None:
    assert validate_template(morning(slot_minutes=minutes)) == []


def test_reserving_every_place_of_the_session_is_allowed() -> None:
    assert validate_template(morning(reserved={"onsite": 4, "contract": 4})) == []
    assert validate_template(morning(reserved={"onsite": 0})) == []
    assert validate_template(morning(capacity=1)) == []


def test_all_problems_of_a_template_are_reported_in_order() -> None:
    template = SessionTemplate(
        weekday=9,
        start=time(10, 0),
        end=time(9, 0),
        slot_minutes=25,
        capacity=0,
        reserved={"online": 1, "onsite": -2},
        fee_fen=-100,
    )
    assert [f.code for f in validate_template(template)] == [
        "SCHED-WEEKDAY",
        "SCHED-SLOT-LENGTH",
        "SCHED-CAPACITY",
        "SCHED-TIMES",
        "SCHED-QUOTA-UNKNOWN-CHANNEL",
        "SCHED-QUOTA-NEGATIVE",
        "SCHED-FEE",
    ]
    assert {f.expression for f in validate_template(template)} == {"Schedule.extension[0]"}


# --- check_overlaps --------------------------------------------------------------------------


def test_overlapping_sessions_on_the_same_weekday_are_reported() -> None:
    first = morning()
    second = morning(start=time(9, 30), end=time(11, 30))
    [finding] = check_overlaps([first, second])
    assert (finding.code, finding.severity, finding.expression) == (
        "SCHED-OVERLAP",
        "error",
        "Schedule.extension[1]",
    )
    assert "08:00-10:00" in finding.message_en and "09:30-11:30" in finding.message_zh


def test_a_session_inside_another_overlaps() -> None:
    inner = morning(start=time(8, 30), end=time(9, 0))
    assert [f.code for f in check_overlaps([inner, morning()])] == ["SCHED-OVERLAP"]


def test_touching_sessions_and_other_weekdays_do_not_overlap() -> None:
    afternoon = morning(start=time(10, 0), end=time(12, 0))
    tuesday = morning(weekday=2)
    assert check_overlaps([morning(), afternoon, tuesday]) == []


def test_each_overlapping_pair_is_reported_once() -> None:
    findings = check_overlaps([morning(), morning(), morning(weekday=2), morning()])
    assert [f.expression for f in findings] == [
        "Schedule.extension[1]",
        "Schedule.extension[3]",
        "Schedule.extension[3]",
    ]


# --- generate_slots: days, times, release ----------------------------------------------------


def test_a_session_becomes_consecutive_aware_slots_on_its_weekday() -> None:
    slots = slots_of(morning(), days=7)
    assert [(s.start, s.end) for s in slots] == [
        (at(MONDAY, 8), at(MONDAY, 8, 30)),
        (at(MONDAY, 8, 30), at(MONDAY, 9)),
        (at(MONDAY, 9), at(MONDAY, 9, 30)),
        (at(MONDAY, 9, 30), at(MONDAY, 10)),
    ]
    assert all(s.start.tzinfo is TZ and s.end.tzinfo is TZ for s in slots)
    assert slots[0].start.utcoffset() == timedelta(hours=8)


def test_only_days_of_the_template_weekday_get_slots() -> None:
    wednesday = morning(weekday=3, slot_minutes=60)
    slots = slots_of(wednesday, days=14)
    assert [s.start for s in slots] == [
        at(WEDNESDAY, 8),
        at(WEDNESDAY, 9),
        at(WEDNESDAY + timedelta(days=7), 8),
        at(WEDNESDAY + timedelta(days=7), 9),
    ]
    assert slots_of(wednesday, days=2) == []  # Monday and Tuesday only
    assert slots_of(morning(weekday=7, slot_minutes=60), first_day=date(2026, 3, 8))[0].start == (
        at(date(2026, 3, 8), 8)
    )


def test_holidays_are_skipped() -> None:
    holiday = MONDAY + timedelta(days=7)
    slots = generate_slots(
        [morning(slot_minutes=60)], first_day=MONDAY, days=21, holidays={holiday}, tz=TZ
    )
    assert sorted({s.start.date() for s in slots}) == [MONDAY, MONDAY + timedelta(days=14)]


def test_no_days_make_no_slots() -> None:
    assert slots_of(morning(), days=0) == []


@pytest.mark.parametrize(("minutes", "count"), [(10, 24), (15, 16), (30, 8), (60, 4)])
def test_each_slot_length_cuts_a_four_hour_session_evenly(minutes: int, count: int) -> None:
    slots = slots_of(morning(end=time(12, 0), slot_minutes=minutes, capacity=1))
    assert len(slots) == count
    assert slots[0].start == at(MONDAY, 8) and slots[-1].end == at(MONDAY, 12)
    assert all(s.end - s.start == timedelta(minutes=minutes) for s in slots)
    assert all(a.end == b.start for a, b in zip(slots, slots[1:], strict=False))


def test_release_and_pool_times_follow_the_default_policy() -> None:
    slot = slots_of(morning(weekday=3), first_day=WEDNESDAY)[1]
    assert slot.start == at(WEDNESDAY, 8, 30)
    assert slot.release_at == at(WEDNESDAY - timedelta(days=7), 8)
    assert slot.pool_release_at == at(WEDNESDAY - timedelta(days=1), 8, 30)


def test_release_times_follow_a_configured_policy() -> None:
    release = ReleasePolicy(days_before=1, at=time(15, 0), pool_hours_before=2)
    [slot, *_] = generate_slots(
        [morning()], first_day=MONDAY, days=1, holidays=(), tz=TZ, release=release
    )
    assert slot.release_at == at(MONDAY - timedelta(days=1), 15)
    assert slot.pool_release_at == at(MONDAY, 6)


def test_service_type_and_fee_are_carried_to_each_slot() -> None:
    slots = slots_of(morning(service_type="expert", fee_fen=5000))
    assert {(s.service_type, s.fee_fen) for s in slots} == {("expert", 5000)}


def test_slots_are_sorted_by_start_then_service_type() -> None:
    general = morning(start=time(9, 0), end=time(10, 0), slot_minutes=60)
    expert = morning(start=time(9, 0), end=time(10, 0), slot_minutes=60, service_type="expert")
    earlier = morning(start=time(8, 0), end=time(9, 0), slot_minutes=60, service_type="zz")
    slots = slots_of(general, expert, earlier)
    assert [(s.start.hour, s.service_type) for s in slots] == [
        (8, "zz"),
        (9, "expert"),
        (9, "general"),
    ]


def test_an_invalid_template_raises() -> None:
    with pytest.raises(ValueError, match=r"session template 1 .*SCHED-SLOT-LENGTH"):
        slots_of(morning(), morning(slot_minutes=20))


# --- generate_slots: quotas ------------------------------------------------------------------


def test_without_reservations_every_place_is_online() -> None:
    assert quotas(slots_of(morning())) == [{"online": 2}] * 4


def test_reserved_places_are_interleaved_not_put_at_the_start() -> None:
    one_each = morning(end=time(9, 0), slot_minutes=15, capacity=1, reserved={"onsite": 2})
    assert quotas(slots_of(one_each)) == [
        {"online": 1},
        {"onsite": 1},
        {"online": 1},
        {"onsite": 1},
    ]


def test_a_full_slot_passes_its_reserved_place_to_the_next_with_room_wrapping_around() -> None:
    template = morning(
        end=time(9, 0), slot_minutes=15, capacity=1, reserved={"onsite": 2, "referral": 2}
    )
    assert quotas(slots_of(template)) == [
        {"referral": 1},
        {"onsite": 1},
        {"referral": 1},
        {"onsite": 1},
    ]


def test_three_channels_share_a_session_by_the_spreading_rule() -> None:
    template = morning(
        end=time(12, 0), capacity=2, reserved={"onsite": 1, "referral": 2, "contract": 3}
    )
    assert quotas(slots_of(template)) == [
        {"online": 2},
        {"online": 1, "contract": 1},
        {"online": 1, "referral": 1},
        {"online": 2},
        {"onsite": 1, "contract": 1},
        {"online": 2},
        {"referral": 1, "contract": 1},
        {"online": 2},
    ]


def test_more_reserved_places_than_slots_fill_slots_up_to_their_capacity() -> None:
    template = morning(slot_minutes=60, capacity=3, reserved={"onsite": 5})
    assert quotas(slots_of(template)) == [{"online": 1, "onsite": 2}, {"onsite": 3}]


def test_a_session_reserved_entirely_has_no_online_places() -> None:
    template = morning(reserved={"contract": 5, "referral": 3})
    slots = slots_of(template)
    assert all("online" not in s.quotas and sum(s.quotas.values()) == 2 for s in slots)
    totals: Counter[str] = Counter()
    for s in slots:
        totals.update(s.quotas)
    assert totals == Counter({"contract": 5, "referral": 3})


def test_a_channel_reserving_zero_places_is_left_out() -> None:
    assert quotas(slots_of(morning(reserved={"onsite": 0}))) == [{"online": 2}] * 4


@st.composite
def templates(draw: st.DrawFn) -> SessionTemplate:
    minutes = draw(st.sampled_from(SLOT_LENGTHS))
    slots = draw(st.integers(min_value=1, max_value=12))
    start_minute = draw(st.integers(min_value=0, max_value=24 * 60 - 1 - slots * minutes))
    start = datetime.combine(MONDAY, time(0, 0)) + timedelta(minutes=start_minute)
    end = start + timedelta(minutes=slots * minutes)
    capacity = draw(st.integers(min_value=1, max_value=6))
    left = slots * capacity
    reserved: dict[str, int] = {}
    for channel in RESERVABLE_CHANNELS:
        count = draw(st.integers(min_value=0, max_value=left))
        if count or draw(st.booleans()):
            reserved[channel] = count
        left -= count
    return SessionTemplate(
        weekday=1,
        start=start.time(),
        end=end.time(),
        slot_minutes=minutes,
        capacity=capacity,
        reserved=reserved,
    )


# In CI the examples are derandomized so that a landing does not depend on luck (as in the
# repository's other property tests); locally every run explores new templates.
@settings(max_examples=300, deadline=None, derandomize=os.environ.get("CI") == "true")
@given(template=templates())
def test_generated_quotas_fill_each_slot_and_keep_each_reservation(
    template: SessionTemplate,
) -> None:
    assert validate_template(template) == []
    slots = slots_of(template)
    length = datetime.combine(MONDAY, template.end) - datetime.combine(MONDAY, template.start)
    assert len(slots) == length // timedelta(minutes=template.slot_minutes)
    totals: Counter[str] = Counter()
    for s in slots:
        assert sum(s.quotas.values()) == template.capacity
        assert all(n > 0 for n in s.quotas.values())
        assert set(s.quotas) <= set(CHANNELS)
        totals.update(s.quotas)
    reserved = sum(template.reserved.values())
    assert totals["online"] == len(slots) * template.capacity - reserved
    for channel in RESERVABLE_CHANNELS:
        assert totals[channel] == template.reserved.get(channel, 0)
