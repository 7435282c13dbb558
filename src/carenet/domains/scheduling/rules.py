"""Pure rules of time-slot appointments (分时段预约): who may book which slot through which channel,
which channel's quota a booking takes, Appointment.status changes, cancelling, check-in, no-shows
and the waiting queue. No I/O; the scheduling service applies them.

Requirements come from the issue "Time-slot appointments and registration (分时段预约) that never
double-book" and the 国家卫生健康委 policy on 预约诊疗 (real-name, time-slot appointments at
hospitals of level 2 and above, precise to one hour or better), except where RULES.md is cited.
Every number is a field of :class:`BookingPolicy` (configuration, never a literal in a rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from types import MappingProxyType

from carenet.fhir.findings import Finding

#: Booking channels, in the order the general pool hands out unused places: 网上预约, 现场挂号,
#: 双向转诊绿色通道 and 家庭医生签约患者 (the last two reserved quota of RULES.md FD-2).
CHANNELS: tuple[str, ...] = ("online", "onsite", "referral", "contract")
CHANNEL_NAMES_ZH: Mapping[str, str] = MappingProxyType(
    {
        "online": "网上预约",
        "onsite": "现场挂号",
        "referral": "双向转诊绿色通道",
        "contract": "家庭医生签约患者",
    }
)

#: Appointment.status values that hold a place in a slot.
ACTIVE_STATUSES = frozenset({"proposed", "pending", "booked", "arrived"})

#: Slot.status values that cannot be booked whatever their quota (停诊, withdrawn, held, void).
UNAVAILABLE_SLOT_STATUSES = frozenset({"busy-unavailable", "busy-tentative", "entered-in-error"})

_TERMINAL = frozenset({"fulfilled", "cancelled", "noshow", "entered-in-error"})

#: FHIR Appointment.status changes this platform allows. Every state that is not terminal may
#: also become entered-in-error (a booking made by mistake is voided, not deleted).
TRANSITIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "proposed": frozenset({"pending", "booked", "cancelled", "entered-in-error"}),
        "pending": frozenset({"booked", "cancelled", "entered-in-error"}),
        "booked": frozenset({"arrived", "cancelled", "noshow", "entered-in-error"}),
        "arrived": frozenset({"fulfilled", "entered-in-error"}),
        **{status: frozenset() for status in _TERMINAL},
    }
)

_STATUS_NAMES_ZH: Mapping[str, str] = MappingProxyType(
    {
        "proposed": "待确认",
        "pending": "待处理",
        "booked": "已预约",
        "arrived": "已到诊",
        "checked-in": "已签到",
        "fulfilled": "已完成",
        "cancelled": "已取消",
        "noshow": "爽约",
        "entered-in-error": "录入错误",
        "waitlist": "候补",
    }
)

_EXPR_PATIENT = "Parameters.parameter.where(name='patient')"
_EXPR_CHANNEL = "Parameters.parameter.where(name='channel')"
_EXPR_SLOT = "Parameters.parameter.where(name='slot')"


@dataclass(frozen=True, slots=True)
class BookingPolicy:
    """The numbers of booking; bootstrap builds one from Settings."""

    window_days: int = 14  # bookable up to this many days after today (local dates)
    max_future_bookings: int = 5  # active appointments a patient may hold at once
    noshow_limit: int = 3  # this many no-shows ...
    noshow_window_days: int = 90  # ... within this many days ...
    suspension_days: int = 30  # ... suspend online booking this long from the latest one
    cancel_cutoff_minutes: int = 120  # a patient may cancel until this long before the start
    reminder_ahead: int = 3  # 候诊提醒 when this many patients are ahead in the queue


@dataclass(frozen=True, slots=True)
class Quota:
    """Places of one channel in one slot, and how many of them active appointments hold."""

    capacity: int
    booked: int

    @property
    def free(self) -> int:
        return max(self.capacity - self.booked, 0)


@dataclass(frozen=True, slots=True)
class SlotView:
    """What the booking rules need to know about a Slot."""

    start: datetime  # timezone-aware
    end: datetime
    status: str  # FHIR Slot.status
    quotas: Mapping[str, Quota]  # channel -> quota
    release_at: datetime | None = None  # 放号: not bookable before
    pool_release_at: datetime | None = None  # from then, unused places open to every channel


@dataclass(frozen=True, slots=True)
class Booker:
    """The patient a booking is for, as the booking rules see them."""

    verified: bool  # real-name verified (实名认证)
    channels: frozenset[str]  # channels this booker is entitled to use


@dataclass(frozen=True, slots=True)
class PatientBookings:
    """The patient's history that limits new bookings."""

    # (start, practitioner key) of active appointments starting at or after now
    future: Sequence[tuple[datetime, str]] = ()
    # start times of the patient's noshow appointments
    noshows: Sequence[datetime] = ()


def _local(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _duration(minutes: int) -> tuple[str, str]:
    """``minutes`` in hours and minutes, in Chinese and English: ("1小时30分钟", "1 h 30 min")."""
    hours, rest = divmod(minutes, 60)
    zh, en = [], []
    if hours:
        zh.append(f"{hours}小时")
        en.append(f"{hours} h")
    if rest or not hours:
        zh.append(f"{rest}分钟")
        en.append(f"{rest} min")
    return "".join(zh), " ".join(en)


def choose_quota(slot: SlotView, channel: str, now: datetime) -> str | None:
    """The channel whose place a booking through ``channel`` takes, or None when there is none.

    A channel first uses its own places. Reserved places for on-site, referral (RULES.md FD-2)
    and contracted patients (FD-2) that nobody has used by ``slot.pool_release_at`` open to every
    channel (the issue: unused reserved quota is released to the general pool); the pool hands
    them out in CHANNELS order.
    """
    if channel not in CHANNELS:
        return None
    own = slot.quotas.get(channel)
    if own is not None and own.free > 0:
        return channel
    if slot.pool_release_at is not None and now >= slot.pool_release_at:
        for candidate in CHANNELS:
            quota = slot.quotas.get(candidate)
            if quota is not None and quota.free > 0:
                return candidate
    return None


def slot_status(quotas: Mapping[str, Quota]) -> str:
    """FHIR Slot.status from its quotas: ``free`` while any channel has a place, else ``busy``."""
    return "free" if any(q.free > 0 for q in quotas.values()) else "busy"


def suspension_until(
    policy: BookingPolicy, noshows: Sequence[datetime], now: datetime
) -> datetime | None:
    """When the patient's suspension from online booking ends, or None when there is none.

    The issue: ``noshow_limit`` (3) no-shows within ``noshow_window_days`` (90) suspend online
    booking for ``suspension_days`` (30), counted from the most recent of those no-shows.
    """
    since = now - timedelta(days=policy.noshow_window_days)
    recent = [start for start in noshows if since <= start <= now]
    if len(recent) < policy.noshow_limit:
        return None
    ends = max(recent) + timedelta(days=policy.suspension_days)
    return ends if ends > now else None


def check_booking(
    policy: BookingPolicy,
    *,
    booker: Booker,
    channel: str,
    slot: SlotView,
    practitioner: str,
    bookings: PatientBookings,
    now: datetime,
    tz: tzinfo,
) -> list[Finding]:
    """Every reason the patient may not book ``slot`` through ``channel`` now; [] when they may.

    - Real-name booking (实名制预约, 国家卫生健康委 policy on 预约诊疗): the patient is verified.
    - The channel exists and the booker is entitled to it; referral and contracted-patient
      channels are the green channel of RULES.md FD-2.
    - The slot is open (not 停诊 or withdrawn), has not started, lies within ``window_days`` of
      today's local date, and has been released (放号).
    - ``noshow_limit`` no-shows suspend online booking only (the issue); other channels stay open.
    - At most one booking per patient per practitioner per local day, and at most
      ``max_future_bookings`` active future bookings (the issue).
    - The slot has a place for the channel, or the general pool is open (:func:`choose_quota`).
    """
    findings: list[Finding] = []

    def add(code: str, zh: str, en: str, expression: str) -> None:
        findings.append(Finding(code, "error", zh, en, expression))

    if not booker.verified:
        add(
            "APPT-REALNAME-REQUIRED",
            "预约挂号须先完成实名认证",
            "the patient must be real-name verified before booking",
            _EXPR_PATIENT,
        )
    known_channel = channel in CHANNELS
    if not known_channel:
        add(
            "APPT-CHANNEL-UNKNOWN",
            f"未知的预约渠道“{channel}”，可选：{'、'.join(CHANNELS)}",
            f"unknown booking channel '{channel}'; one of: {', '.join(CHANNELS)}",
            _EXPR_CHANNEL,
        )
    elif channel not in booker.channels:
        add(
            "APPT-CHANNEL-NOT-ALLOWED",
            f"该患者不能通过“{CHANNEL_NAMES_ZH[channel]}”渠道预约",
            f"this patient may not book through the '{channel}' channel",
            _EXPR_CHANNEL,
        )
    unavailable = slot.status in UNAVAILABLE_SLOT_STATUSES
    if unavailable:
        add(
            "APPT-SLOT-UNAVAILABLE",
            f"该号源不可预约（停诊或已停用，状态 {slot.status}）",
            f"this slot cannot be booked (session cancelled or slot withdrawn; status {slot.status})",
            _EXPR_SLOT,
        )
    if slot.start <= now:
        add(
            "APPT-SLOT-PAST",
            "该号源的就诊时间已开始或已过去",
            "this slot has already started",
            _EXPR_SLOT,
        )
    today = now.astimezone(tz).date()
    slot_day = slot.start.astimezone(tz).date()
    if slot_day > today + timedelta(days=policy.window_days):
        add(
            "APPT-BEYOND-WINDOW",
            f"只能预约今天起{policy.window_days}天内的号源",
            f"slots can be booked at most {policy.window_days} days ahead",
            _EXPR_SLOT,
        )
    if slot.release_at is not None and now < slot.release_at:
        at = _local(slot.release_at, tz)
        add(
            "APPT-NOT-RELEASED",
            f"该号源尚未放号，放号时间为{at}",
            f"this slot is not yet open for booking; it opens at {at}",
            _EXPR_SLOT,
        )
    if channel == "online":
        ends = suspension_until(policy, bookings.noshows, now)
        if ends is not None:
            until = _local(ends, tz)
            add(
                "APPT-SUSPENDED",
                f"因{policy.noshow_window_days}天内爽约{policy.noshow_limit}次，"
                f"网上预约暂停至{until}",
                f"online booking is suspended until {until} after {policy.noshow_limit} "
                f"no-shows within {policy.noshow_window_days} days",
                _EXPR_SLOT,
            )
    if any(
        key == practitioner and start.astimezone(tz).date() == slot_day
        for start, key in bookings.future
    ):
        add(
            "APPT-DUPLICATE-DAY",
            "同一患者同一天只能预约同一医生一次",
            "a patient may book the same practitioner only once a day",
            _EXPR_SLOT,
        )
    if len(bookings.future) >= policy.max_future_bookings:
        add(
            "APPT-TOO-MANY",
            f"每位患者最多同时持有{policy.max_future_bookings}个未就诊的预约",
            f"a patient may hold at most {policy.max_future_bookings} upcoming appointments",
            _EXPR_SLOT,
        )
    if known_channel and not unavailable and choose_quota(slot, channel, now) is None:
        add(
            "APPT-SLOT-FULL",
            "该时段号源已约满",
            "this slot has no place left for this channel",
            _EXPR_SLOT,
        )
    return findings


def check_transition(current: str, target: str) -> list[Finding]:
    """[] when an appointment may go from ``current`` to ``target`` (:data:`TRANSITIONS`), else
    APPT-WRONG-STATE: a workflow step checks the state it leaves (STYLE.md, GNU Health)."""
    if target in TRANSITIONS.get(current, frozenset()):
        return []
    current_zh = _STATUS_NAMES_ZH.get(current, current)
    target_zh = _STATUS_NAMES_ZH.get(target, target)
    return [
        Finding(
            "APPT-WRONG-STATE",
            "error",
            f"预约状态为“{current_zh}”（{current}），不能变为“{target_zh}”（{target}）",
            f"an appointment in status '{current}' cannot become '{target}'",
            "Appointment.status",
        )
    ]


def check_cancel(
    policy: BookingPolicy, *, status: str, start: datetime, now: datetime, by_patient: bool
) -> list[Finding]:
    """Whether an appointment may be cancelled now.

    The issue: a patient may cancel up to ``cancel_cutoff_minutes`` (2 hours) before the start.
    Staff may cancel at any time (停诊: the doctor cannot come).
    """
    findings = check_transition(status, "cancelled")
    if by_patient and now > start - timedelta(minutes=policy.cancel_cutoff_minutes):
        zh, en = _duration(policy.cancel_cutoff_minutes)
        findings.append(
            Finding(
                "APPT-CANCEL-CUTOFF",
                "error",
                f"就诊开始前{zh}内不能自行取消预约",
                f"a patient may not cancel within {en} of the start",
                "Appointment.start",
            )
        )
    return findings


def check_checkin(
    *, status: str, start: datetime, end: datetime, now: datetime, tz: tzinfo
) -> list[Finding]:
    """Whether the patient may check in (签到) now: a booked appointment, on its own local day,
    before its slot is over (the issue: check-in puts the patient in the waiting queue)."""
    findings = check_transition(status, "arrived")
    if now.astimezone(tz).date() != start.astimezone(tz).date():
        day = start.astimezone(tz).date().isoformat()
        findings.append(
            Finding(
                "APPT-CHECKIN-WRONG-DAY",
                "error",
                f"只能在就诊当天（{day}）签到",
                f"check-in is only possible on the day of the appointment ({day})",
                "Appointment.start",
            )
        )
    elif now > end:
        until = _local(end, tz)
        findings.append(
            Finding(
                "APPT-CHECKIN-TOO-LATE",
                "error",
                f"就诊时段已于{until}结束，不能再签到",
                f"the appointment's time slot ended at {until}; check-in is closed",
                "Appointment.end",
            )
        )
    return findings


def check_noshow(*, status: str, end: datetime, now: datetime) -> list[Finding]:
    """Whether a booked appointment may be marked noshow (爽约): not before its slot ends, since
    the patient can still arrive during it (the issue: no-shows count towards suspension)."""
    findings = check_transition(status, "noshow")
    if now < end:
        findings.append(
            Finding(
                "APPT-NOSHOW-TOO-EARLY",
                "error",
                "就诊时段尚未结束，不能记为爽约",
                "the appointment's time slot has not ended; it cannot be a no-show yet",
                "Appointment.end",
            )
        )
    return findings


def reminder_due(policy: BookingPolicy, ahead_before: int, ahead_now: int) -> bool:
    """Whether to send the waiting reminder (候诊提醒, the issue): the queue has just moved to
    ``reminder_ahead`` (3) patients ahead. Sent once: not again while the count stays there."""
    return ahead_now == policy.reminder_ahead and ahead_before > ahead_now


def queue_position(waiting: Sequence[tuple[int, str]], appointment_id: str) -> int | None:
    """1-based place of ``appointment_id`` in one waiting queue, in order of queue number (ties,
    which numbering under the queue's lock never makes, by appointment id); None when it is not
    waiting there.

    ``waiting`` holds (queue number, appointment id) of the arrived, not yet called
    appointments of the queue. Numbers, not check-in times, order the queue: they are given
    one after another under a lock, whereas two clocks may disagree by a few milliseconds.
    """
    mine = next((entry for entry in waiting if entry[1] == appointment_id), None)
    if mine is None:
        return None
    return 1 + sum(1 for entry in waiting if entry < mine)
