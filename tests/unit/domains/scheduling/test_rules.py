"""Pure booking rules: who may book which slot, quotas and the general pool, no-show suspension,
Appointment.status transitions, cancelling, check-in, no-shows and the waiting queue."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest

from carenet.domains.scheduling.rules import (
    ACTIVE_STATUSES,
    CHANNELS,
    TRANSITIONS,
    Booker,
    BookingPolicy,
    PatientBookings,
    Quota,
    SlotView,
    check_booking,
    check_cancel,
    check_checkin,
    check_noshow,
    check_transition,
    choose_quota,
    queue_position,
    reminder_due,
    slot_status,
    suspension_until,
)
from carenet.fhir.findings import Finding

TZ = ZoneInfo("Asia/Shanghai")
POLICY = BookingPolicy()
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a Monday morning
SLOT_START = datetime(2026, 3, 4, 9, 0, tzinfo=TZ)
EVERYONE = Booker(verified=True, channels=frozenset(CHANNELS))
ONLINE_ONLY = Booker(verified=True, channels=frozenset({"online"}))
DR_WANG = "PractitionerRole/wang"
DR_LI = "PractitionerRole/li"

PATIENT_EXPR = "Parameters.parameter.where(name='patient')"
CHANNEL_EXPR = "Parameters.parameter.where(name='channel')"
SLOT_EXPR = "Parameters.parameter.where(name='slot')"


def make_slot(
    start: datetime = SLOT_START,
    *,
    status: str = "free",
    quotas: Mapping[str, Quota] | None = None,
    release_at: datetime | None = None,
    pool_release_at: datetime | None = None,
) -> SlotView:
    return SlotView(
        start=start,
        end=start + timedelta(minutes=30),
        status=status,
        quotas={"online": Quota(3, 0)} if quotas is None else quotas,
        release_at=release_at,
        pool_release_at=pool_release_at,
    )


def book(
    *,
    booker: Booker = EVERYONE,
    channel: str = "online",
    slot: SlotView | None = None,
    practitioner: str = DR_WANG,
    bookings: PatientBookings = PatientBookings(),
    now: datetime = NOW,
    policy: BookingPolicy = POLICY,
) -> list[Finding]:
    return check_booking(
        policy,
        booker=booker,
        channel=channel,
        slot=make_slot() if slot is None else slot,
        practitioner=practitioner,
        bookings=bookings,
        now=now,
        tz=TZ,
    )


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def three_noshows(latest: datetime) -> list[datetime]:
    return [NOW - timedelta(days=60), NOW - timedelta(days=40), latest]


# --- check_booking ---------------------------------------------------------------------------


def test_a_verified_patient_may_book_a_free_released_slot_online() -> None:
    assert book(slot=make_slot(release_at=NOW - timedelta(days=1))) == []


def test_an_unverified_patient_must_verify_their_real_name_first() -> None:
    [finding] = book(booker=Booker(verified=False, channels=frozenset(CHANNELS)))
    assert (finding.code, finding.severity, finding.expression) == (
        "APPT-REALNAME-REQUIRED",
        "error",
        PATIENT_EXPR,
    )
    assert finding.message_zh and finding.message_en


def test_an_unknown_channel_is_refused_without_a_quota_check() -> None:
    [finding] = book(channel="wechat-vip")
    assert (finding.code, finding.expression) == ("APPT-CHANNEL-UNKNOWN", CHANNEL_EXPR)
    assert "wechat-vip" in finding.message_zh and "wechat-vip" in finding.message_en


def test_a_booker_may_use_only_the_channels_they_are_entitled_to() -> None:
    slot = make_slot(quotas={"online": Quota(3, 0), "referral": Quota(1, 0)})
    [finding] = book(booker=ONLINE_ONLY, channel="referral", slot=slot)
    assert (finding.code, finding.expression) == ("APPT-CHANNEL-NOT-ALLOWED", CHANNEL_EXPR)
    assert "双向转诊绿色通道" in finding.message_zh


def test_a_contracted_patient_books_from_the_contract_quota() -> None:
    slot = make_slot(quotas={"online": Quota(3, 3), "contract": Quota(1, 0)})
    assert book(channel="contract", slot=slot) == []
    assert codes(book(channel="online", slot=slot)) == ["APPT-SLOT-FULL"]


@pytest.mark.parametrize("status", ["busy-unavailable", "busy-tentative", "entered-in-error"])
def test_a_cancelled_or_withdrawn_slot_cannot_be_booked_and_is_not_also_reported_full(
    status: str,
) -> None:
    slot = make_slot(status=status, quotas={})
    [finding] = book(slot=slot)
    assert (finding.code, finding.expression) == ("APPT-SLOT-UNAVAILABLE", SLOT_EXPR)


def test_a_busy_slot_is_reported_full() -> None:
    assert codes(book(slot=make_slot(status="busy", quotas={"online": Quota(2, 2)}))) == [
        "APPT-SLOT-FULL"
    ]


def test_a_slot_starting_now_is_past_but_one_starting_a_minute_later_is_not() -> None:
    assert codes(book(slot=make_slot(NOW))) == ["APPT-SLOT-PAST"]
    assert codes(book(slot=make_slot(NOW - timedelta(hours=1)))) == ["APPT-SLOT-PAST"]
    assert book(slot=make_slot(NOW + timedelta(minutes=1))) == []


def test_the_14th_day_after_today_is_bookable_and_the_15th_is_not() -> None:
    last_day = datetime(2026, 3, 16, 23, 30, tzinfo=TZ)
    first_day_beyond = datetime(2026, 3, 17, 0, 0, tzinfo=TZ)
    assert book(slot=make_slot(last_day)) == []
    [finding] = book(slot=make_slot(first_day_beyond))
    assert (finding.code, finding.expression) == ("APPT-BEYOND-WINDOW", SLOT_EXPR)
    assert "14" in finding.message_zh and "14" in finding.message_en


def test_the_window_counts_local_dates_not_utc_dates() -> None:
    # 00:30 in Shanghai on 2 March is still 1 March in UTC.
    now = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    assert book(slot=make_slot(datetime(2026, 3, 16, 23, 30, tzinfo=TZ)), now=now) == []
    assert codes(book(slot=make_slot(datetime(2026, 3, 17, 0, 30, tzinfo=TZ)), now=now)) == [
        "APPT-BEYOND-WINDOW"
    ]


def test_the_window_is_configuration() -> None:
    policy = BookingPolicy(window_days=7)
    assert book(slot=make_slot(datetime(2026, 3, 9, 9, 0, tzinfo=TZ)), policy=policy) == []
    assert codes(book(slot=make_slot(datetime(2026, 3, 10, 9, 0, tzinfo=TZ)), policy=policy)) == [
        "APPT-BEYOND-WINDOW"
    ]


def test_a_slot_released_exactly_now_is_bookable() -> None:
    assert book(slot=make_slot(release_at=NOW)) == []


def test_a_slot_released_one_minute_from_now_is_not_and_says_when_in_local_time() -> None:
    release_at = (NOW + timedelta(minutes=1)).astimezone(UTC)
    [finding] = book(slot=make_slot(release_at=release_at))
    assert (finding.code, finding.expression) == ("APPT-NOT-RELEASED", SLOT_EXPR)
    assert "2026-03-02 09:01" in finding.message_zh
    assert "2026-03-02 09:01" in finding.message_en


def test_three_noshows_suspend_online_booking_and_say_until_when() -> None:
    latest = datetime(2026, 2, 20, 14, 0, tzinfo=TZ)
    bookings = PatientBookings(noshows=three_noshows(latest))
    [finding] = book(bookings=bookings)
    assert (finding.code, finding.expression) == ("APPT-SUSPENDED", SLOT_EXPR)
    assert "2026-03-22" in finding.message_zh and "2026-03-22" in finding.message_en


def test_a_suspension_does_not_stop_onsite_or_referral_booking() -> None:
    slot = make_slot(quotas={"online": Quota(1, 0), "onsite": Quota(1, 0), "referral": Quota(1, 0)})
    bookings = PatientBookings(noshows=three_noshows(NOW - timedelta(days=1)))
    assert book(channel="onsite", slot=slot, bookings=bookings) == []
    assert book(channel="referral", slot=slot, bookings=bookings) == []


def test_the_same_practitioner_on_the_same_local_day_is_a_duplicate() -> None:
    bookings = PatientBookings(future=[(SLOT_START.replace(hour=15), DR_WANG)])
    [finding] = book(bookings=bookings)
    assert (finding.code, finding.expression) == ("APPT-DUPLICATE-DAY", SLOT_EXPR)


def test_another_practitioner_or_another_day_is_not_a_duplicate() -> None:
    assert book(bookings=PatientBookings(future=[(SLOT_START, DR_LI)])) == []
    next_day = SLOT_START + timedelta(days=1)
    assert book(bookings=PatientBookings(future=[(next_day, DR_WANG)])) == []


def test_duplicates_are_judged_by_local_date_not_utc_date() -> None:
    # 07:00 on 5 March in Shanghai and 09:00 on 4 March in Shanghai are both 4 March in UTC.
    next_morning = datetime(2026, 3, 5, 7, 0, tzinfo=TZ).astimezone(UTC)
    assert next_morning.date() == SLOT_START.astimezone(UTC).date()
    assert book(bookings=PatientBookings(future=[(next_morning, DR_WANG)])) == []


def test_the_fifth_future_booking_is_allowed_and_the_sixth_is_not() -> None:
    def held(n: int) -> PatientBookings:
        return PatientBookings(future=[(NOW + timedelta(days=i + 5), DR_LI) for i in range(n)])

    assert book(bookings=held(4)) == []
    [finding] = book(bookings=held(5))
    assert (finding.code, finding.expression) == ("APPT-TOO-MANY", SLOT_EXPR)
    assert "5" in finding.message_zh and "5" in finding.message_en


def test_a_full_channel_is_reported_until_the_general_pool_opens() -> None:
    quotas = {"online": Quota(2, 2), "onsite": Quota(1, 0)}
    [finding] = book(slot=make_slot(quotas=quotas, pool_release_at=NOW + timedelta(minutes=1)))
    assert (finding.code, finding.expression) == ("APPT-SLOT-FULL", SLOT_EXPR)
    assert book(slot=make_slot(quotas=quotas, pool_release_at=NOW)) == []


def test_every_finding_is_reported_in_order_for_a_past_withdrawn_slot() -> None:
    findings = book(
        booker=Booker(verified=False, channels=frozenset()),
        slot=make_slot(
            NOW - timedelta(hours=1),
            status="busy-unavailable",
            quotas={},
            release_at=NOW + timedelta(days=1),
        ),
        bookings=PatientBookings(
            future=[(NOW - timedelta(minutes=30), DR_WANG)]
            + [(NOW + timedelta(days=i + 3), DR_LI) for i in range(4)],
            noshows=three_noshows(NOW - timedelta(days=1)),
        ),
    )
    assert [(f.code, f.severity, f.expression) for f in findings] == [
        ("APPT-REALNAME-REQUIRED", "error", PATIENT_EXPR),
        ("APPT-CHANNEL-NOT-ALLOWED", "error", CHANNEL_EXPR),
        ("APPT-SLOT-UNAVAILABLE", "error", SLOT_EXPR),
        ("APPT-SLOT-PAST", "error", SLOT_EXPR),
        ("APPT-NOT-RELEASED", "error", SLOT_EXPR),
        ("APPT-SUSPENDED", "error", SLOT_EXPR),
        ("APPT-DUPLICATE-DAY", "error", SLOT_EXPR),
        ("APPT-TOO-MANY", "error", SLOT_EXPR),
    ]
    assert all(f.message_zh and f.message_en for f in findings)


def test_every_finding_is_reported_in_order_for_a_full_slot_beyond_the_window() -> None:
    start = NOW + timedelta(days=20)
    findings = book(
        booker=Booker(verified=False, channels=frozenset()),
        slot=make_slot(start, quotas={"online": Quota(1, 1)}, release_at=NOW + timedelta(days=1)),
        bookings=PatientBookings(
            future=[(start, DR_WANG)] + [(NOW + timedelta(days=i + 3), DR_LI) for i in range(4)],
            noshows=three_noshows(NOW - timedelta(days=1)),
        ),
    )
    assert codes(findings) == [
        "APPT-REALNAME-REQUIRED",
        "APPT-CHANNEL-NOT-ALLOWED",
        "APPT-BEYOND-WINDOW",
        "APPT-NOT-RELEASED",
        "APPT-SUSPENDED",
        "APPT-DUPLICATE-DAY",
        "APPT-TOO-MANY",
        "APPT-SLOT-FULL",
    ]


# --- quotas ----------------------------------------------------------------------------------


def test_a_quota_is_never_negative() -> None:
    assert Quota(3, 1).free == 2
    assert Quota(3, 3).free == 0
    assert Quota(2, 3).free == 0


def test_a_channel_takes_its_own_place_first() -> None:
    slot = make_slot(quotas={"online": Quota(1, 0), "onsite": Quota(1, 0)}, pool_release_at=NOW)
    assert choose_quota(slot, "onsite", NOW) == "onsite"
    assert choose_quota(slot, "online", NOW) == "online"


def test_a_full_channel_gets_nothing_before_the_pool_opens() -> None:
    quotas = {"online": Quota(1, 1), "contract": Quota(2, 0)}
    assert choose_quota(make_slot(quotas=quotas), "online", NOW) is None
    later = make_slot(quotas=quotas, pool_release_at=NOW + timedelta(minutes=1))
    assert choose_quota(later, "online", NOW) is None


def test_from_the_pool_release_time_unused_places_go_to_any_channel_in_channel_order() -> None:
    quotas = {
        "online": Quota(2, 2),
        "onsite": Quota(1, 1),
        "referral": Quota(1, 0),
        "contract": Quota(1, 0),
    }
    slot = make_slot(quotas=quotas, pool_release_at=NOW)
    assert choose_quota(slot, "online", NOW) == "referral"
    assert choose_quota(slot, "onsite", NOW) == "referral"
    assert choose_quota(slot, "contract", NOW) == "contract"


def test_a_channel_without_a_quota_of_its_own_uses_the_open_pool() -> None:
    slot = make_slot(quotas={"online": Quota(1, 0)}, pool_release_at=NOW - timedelta(hours=1))
    assert choose_quota(slot, "referral", NOW) == "online"


def test_nothing_is_left_when_every_quota_is_used() -> None:
    slot = make_slot(quotas={"online": Quota(1, 1), "onsite": Quota(1, 1)}, pool_release_at=NOW)
    assert choose_quota(slot, "online", NOW) is None


def test_an_unknown_channel_gets_no_place_even_from_the_pool() -> None:
    slot = make_slot(quotas={"online": Quota(3, 0), "vip": Quota(3, 0)}, pool_release_at=NOW)
    assert choose_quota(slot, "vip", NOW) is None


def test_slot_status_is_busy_only_when_no_channel_has_a_place() -> None:
    assert slot_status({}) == "busy"
    assert slot_status({"online": Quota(2, 2), "onsite": Quota(1, 3)}) == "busy"
    assert slot_status({"online": Quota(2, 2), "contract": Quota(1, 0)}) == "free"


def test_active_statuses_hold_places() -> None:
    assert frozenset({"proposed", "pending", "booked", "arrived"}) == ACTIVE_STATUSES


# --- no-show suspension ----------------------------------------------------------------------


def test_three_noshows_within_90_days_suspend_for_30_days_from_the_latest() -> None:
    noshows = [NOW - timedelta(days=90), NOW - timedelta(days=20), NOW - timedelta(days=2)]
    assert suspension_until(POLICY, noshows, NOW) == NOW + timedelta(days=28)


def test_a_noshow_91_days_ago_no_longer_counts() -> None:
    noshows = [NOW - timedelta(days=91), NOW - timedelta(days=20), NOW - timedelta(days=2)]
    assert suspension_until(POLICY, noshows, NOW) is None


def test_two_noshows_do_not_suspend() -> None:
    assert suspension_until(POLICY, [NOW - timedelta(days=2), NOW - timedelta(days=1)], NOW) is None
    assert suspension_until(POLICY, [], NOW) is None


def test_the_suspension_ends_exactly_30_days_after_the_latest_noshow() -> None:
    assert suspension_until(POLICY, three_noshows(NOW - timedelta(days=30)), NOW) is None
    almost = NOW - timedelta(days=30) + timedelta(minutes=1)
    assert suspension_until(POLICY, three_noshows(almost), NOW) == NOW + timedelta(minutes=1)


def test_noshows_in_the_future_do_not_count() -> None:
    noshows = [NOW - timedelta(days=2), NOW - timedelta(days=1), NOW + timedelta(days=1)]
    assert suspension_until(POLICY, noshows, NOW) is None


def test_suspension_numbers_are_configuration() -> None:
    policy = BookingPolicy(noshow_limit=2, noshow_window_days=30, suspension_days=7)
    noshows = [NOW - timedelta(days=30), NOW - timedelta(days=3)]
    assert suspension_until(policy, noshows, NOW) == NOW + timedelta(days=4)
    assert (
        suspension_until(policy, [NOW - timedelta(days=31), NOW - timedelta(days=3)], NOW) is None
    )


# --- Appointment.status transitions ----------------------------------------------------------

STATUSES = (
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
)
ALLOWED = {
    ("proposed", "pending"),
    ("proposed", "booked"),
    ("proposed", "cancelled"),
    ("proposed", "entered-in-error"),
    ("pending", "booked"),
    ("pending", "cancelled"),
    ("pending", "entered-in-error"),
    ("booked", "arrived"),
    ("booked", "cancelled"),
    ("booked", "noshow"),
    ("booked", "entered-in-error"),
    ("arrived", "fulfilled"),
    ("arrived", "entered-in-error"),
}


def test_the_transition_table_covers_exactly_the_platform_statuses() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("current", "target"), list(product(STATUSES, STATUSES)))
def test_each_status_change_is_allowed_only_if_listed(current: str, target: str) -> None:
    findings = check_transition(current, target)
    if (current, target) in ALLOWED:
        assert findings == []
    else:
        [finding] = findings
        assert (finding.code, finding.severity, finding.expression) == (
            "APPT-WRONG-STATE",
            "error",
            "Appointment.status",
        )
        assert current in finding.message_zh and target in finding.message_zh
        assert current in finding.message_en and target in finding.message_en


@pytest.mark.parametrize("current", ["checked-in", "waitlist", "unknown"])
def test_statuses_outside_the_table_cannot_change(current: str) -> None:
    assert codes(check_transition(current, "arrived")) == ["APPT-WRONG-STATE"]
    assert codes(check_transition(current, "entered-in-error")) == ["APPT-WRONG-STATE"]


# --- cancelling ------------------------------------------------------------------------------


def test_a_patient_may_cancel_exactly_two_hours_before_the_start() -> None:
    start = NOW + timedelta(hours=2)
    assert check_cancel(POLICY, status="booked", start=start, now=NOW, by_patient=True) == []


def test_a_patient_may_not_cancel_one_minute_after_the_cutoff() -> None:
    start = NOW + timedelta(hours=2) - timedelta(minutes=1)
    [finding] = check_cancel(POLICY, status="booked", start=start, now=NOW, by_patient=True)
    assert (finding.code, finding.severity, finding.expression) == (
        "APPT-CANCEL-CUTOFF",
        "error",
        "Appointment.start",
    )
    assert "2小时" in finding.message_zh and "2 h" in finding.message_en


def test_the_cutoff_message_gives_hours_and_minutes() -> None:
    policy = BookingPolicy(cancel_cutoff_minutes=90)
    [finding] = check_cancel(policy, status="booked", start=NOW, now=NOW, by_patient=True)
    assert "1小时30分钟" in finding.message_zh and "1 h 30 min" in finding.message_en
    policy = BookingPolicy(cancel_cutoff_minutes=45)
    [finding] = check_cancel(policy, status="booked", start=NOW, now=NOW, by_patient=True)
    assert "45分钟" in finding.message_zh and "45 min" in finding.message_en


def test_staff_may_cancel_after_the_cutoff() -> None:
    for start in (NOW + timedelta(minutes=1), NOW - timedelta(minutes=10)):
        assert check_cancel(POLICY, status="booked", start=start, now=NOW, by_patient=False) == []


@pytest.mark.parametrize("status", ["proposed", "pending", "booked"])
def test_open_appointments_can_be_cancelled(status: str) -> None:
    start = NOW + timedelta(days=1)
    assert check_cancel(POLICY, status=status, start=start, now=NOW, by_patient=True) == []


def test_a_closed_appointment_cannot_be_cancelled_and_both_problems_are_reported() -> None:
    start = NOW + timedelta(minutes=30)
    findings = check_cancel(POLICY, status="fulfilled", start=start, now=NOW, by_patient=True)
    assert codes(findings) == ["APPT-WRONG-STATE", "APPT-CANCEL-CUTOFF"]
    findings = check_cancel(POLICY, status="arrived", start=start, now=NOW, by_patient=False)
    assert codes(findings) == ["APPT-WRONG-STATE"]


# --- check-in --------------------------------------------------------------------------------


def checkin(now: datetime, *, status: str = "booked", start: datetime, end: datetime) -> list[str]:
    return codes(check_checkin(status=status, start=start, end=end, now=now, tz=TZ))


def test_a_late_evening_appointment_can_be_checked_in_at_2359_but_not_after_midnight() -> None:
    start = datetime(2026, 3, 2, 23, 30, tzinfo=TZ)
    end = datetime(2026, 3, 3, 0, 30, tzinfo=TZ)
    at_2359 = datetime(2026, 3, 2, 23, 59, tzinfo=TZ).astimezone(UTC)
    midnight = datetime(2026, 3, 3, 0, 0, tzinfo=TZ).astimezone(UTC)
    assert midnight.date() == start.astimezone(UTC).date()  # the same day in UTC
    assert checkin(at_2359, start=start, end=end) == []
    assert checkin(midnight, start=start, end=end) == ["APPT-CHECKIN-WRONG-DAY"]


def test_an_early_morning_appointment_cannot_be_checked_in_at_2359_the_evening_before() -> None:
    start = datetime(2026, 3, 3, 7, 0, tzinfo=TZ)
    end = start + timedelta(minutes=30)
    evening_before = datetime(2026, 3, 2, 23, 59, tzinfo=TZ).astimezone(UTC)
    assert evening_before.date() == start.astimezone(UTC).date()  # the same day in UTC
    [finding] = check_checkin(status="booked", start=start, end=end, now=evening_before, tz=TZ)
    assert (finding.code, finding.expression) == ("APPT-CHECKIN-WRONG-DAY", "Appointment.start")
    assert "2026-03-03" in finding.message_zh and "2026-03-03" in finding.message_en
    assert checkin(datetime(2026, 3, 3, 0, 0, tzinfo=TZ), start=start, end=end) == []


def test_check_in_closes_when_the_slot_ends() -> None:
    start, end = NOW, NOW + timedelta(minutes=30)
    assert checkin(end, start=start, end=end) == []
    [finding] = check_checkin(
        status="booked", start=start, end=end, now=end + timedelta(minutes=1), tz=TZ
    )
    assert (finding.code, finding.expression) == ("APPT-CHECKIN-TOO-LATE", "Appointment.end")
    assert "09:30" in finding.message_zh and "09:30" in finding.message_en


@pytest.mark.parametrize("status", ["proposed", "pending", "arrived", "cancelled", "noshow"])
def test_only_a_booked_appointment_can_be_checked_in(status: str) -> None:
    start, end = NOW, NOW + timedelta(minutes=30)
    assert checkin(NOW, status=status, start=start, end=end) == ["APPT-WRONG-STATE"]


def test_a_wrong_state_and_a_wrong_day_are_both_reported() -> None:
    start = NOW + timedelta(days=1)
    end = start + timedelta(minutes=30)
    assert checkin(NOW, status="cancelled", start=start, end=end) == [
        "APPT-WRONG-STATE",
        "APPT-CHECKIN-WRONG-DAY",
    ]


# --- no-shows --------------------------------------------------------------------------------


def test_a_noshow_is_recorded_from_the_end_of_the_slot() -> None:
    end = NOW
    assert check_noshow(status="booked", end=end, now=NOW) == []
    [finding] = check_noshow(status="booked", end=end, now=NOW - timedelta(minutes=1))
    assert (finding.code, finding.severity, finding.expression) == (
        "APPT-NOSHOW-TOO-EARLY",
        "error",
        "Appointment.end",
    )


@pytest.mark.parametrize("status", ["arrived", "cancelled", "fulfilled", "noshow"])
def test_only_a_booked_appointment_can_become_a_noshow(status: str) -> None:
    assert codes(check_noshow(status=status, end=NOW, now=NOW)) == ["APPT-WRONG-STATE"]
    assert codes(check_noshow(status=status, end=NOW, now=NOW - timedelta(minutes=1))) == [
        "APPT-WRONG-STATE",
        "APPT-NOSHOW-TOO-EARLY",
    ]


# --- waiting queue ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "now", "due"),
    [
        (4, 3, True),  # the queue just moved to 3 ahead
        (6, 3, True),  # several called at once
        (3, 3, False),  # already reminded
        (3, 2, False),
        (4, 2, False),  # passed 3 without stopping: the reminder is for exactly 3
        (2, 3, False),  # someone ahead came back
    ],
)
def test_the_waiting_reminder_is_sent_once_when_three_are_ahead(
    before: int, now: int, due: bool
) -> None:
    assert reminder_due(POLICY, before, now) is due


def test_the_reminder_count_is_configuration() -> None:
    policy = BookingPolicy(reminder_ahead=1)
    assert reminder_due(policy, 2, 1) is True
    assert reminder_due(policy, 4, 3) is False


def test_queue_position_follows_the_queue_number_then_appointment_id() -> None:
    waiting = [(7, "c"), (3, "b"), (3, "a"), (5, "d")]
    assert [queue_position(waiting, i) for i in ("a", "b", "c", "d")] == [1, 2, 4, 3]


def test_an_appointment_not_waiting_has_no_queue_position() -> None:
    assert queue_position([(1, "a")], "z") is None
    assert queue_position([], "a") is None
