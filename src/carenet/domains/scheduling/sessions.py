"""Session templates (出诊排班模板) and the slots they make: checking a doctor's weekly sessions,
and turning them into time slots with per-channel quotas and release (放号) times. Pure: no I/O.

Requirements come from the issue "Time-slot appointments and registration (分时段预约) that never
double-book" and the 国家卫生健康委 policy on 预约诊疗: hospitals of level 2 and above offer
time-slot appointments precise to one hour or better.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from carenet.fhir.findings import Finding

#: Slot lengths in minutes: precise to one hour or better.
SLOT_LENGTHS = (10, 15, 30, 60)
#: The channel that gets every place not reserved for another.
ONLINE = "online"
#: Channels a session may reserve places for: 现场挂号, and the referral green channel and
#: contracted patients of RULES.md FD-2. Same names as rules.CHANNELS.
RESERVABLE_CHANNELS = ("onsite", "referral", "contract")


@dataclass(frozen=True, slots=True)
class SessionTemplate:
    """One weekly session (出诊时段) of a schedule: e.g. Monday 08:00-12:00, 15-minute slots."""

    weekday: int  # ISO: 1 Monday .. 7 Sunday
    start: time  # local wall-clock time
    end: time
    slot_minutes: int  # one of SLOT_LENGTHS
    capacity: int  # patients per slot, >= 1
    # places per session reserved for "onsite", "referral", "contract"; the rest are "online"
    reserved: Mapping[str, int] = field(default_factory=dict)
    service_type: str = "general"  # visit type code (普通门诊 general, 专家门诊 expert, ...)
    fee_fen: int = 0  # registration fee in fen


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """When slots open for booking (放号) and when unused reserved places open to everyone."""

    days_before: int = 7  # bookable from this many days before the visit day ...
    at: time = time(8, 0)  # ... at this local time
    pool_hours_before: int = 24  # unused reserved places open to every channel this long before


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """A slot to create: its time, places per channel, visit type, fee and release times."""

    start: datetime  # aware, in the schedule's time zone
    end: datetime
    quotas: Mapping[str, int]  # channel -> places; sums to the template capacity; no zeros
    service_type: str
    fee_fen: int
    release_at: datetime
    pool_release_at: datetime


def _length(t: SessionTemplate) -> timedelta:
    """The session's length on the wall clock (negative when it ends before it starts)."""
    return datetime.combine(date.min, t.end.replace(tzinfo=None)) - datetime.combine(
        date.min, t.start.replace(tzinfo=None)
    )


def _slot_count(t: SessionTemplate) -> int | None:
    """Slots in the session, or None when its slot length or times are not valid."""
    if t.slot_minutes not in SLOT_LENGTHS:
        return None
    length, step = _length(t), timedelta(minutes=t.slot_minutes)
    if length <= timedelta(0) or length % step:
        return None
    return length // step


def validate_template(t: SessionTemplate, index: int = 0) -> list[Finding]:
    """Every reason a session template is unusable; [] when it is fine.

    Slot lengths are 10, 15, 30 or 60 minutes (time-slot appointments precise to one hour or
    better); a session is a whole number of slots; places reserved for on-site, referral and
    contracted patients (RULES.md FD-2) fit in the session. ``index`` is the template's place in
    the schedule, used in each finding's expression.
    """
    expression = f"Schedule.extension[{index}]"
    findings: list[Finding] = []

    def add(code: str, zh: str, en: str) -> None:
        findings.append(Finding(code, "error", zh, en, expression))

    if not 1 <= t.weekday <= 7:
        add(
            "SCHED-WEEKDAY",
            f"出诊星期应为1（周一）至7（周日），而不是{t.weekday}",
            f"the weekday must be 1 (Monday) to 7 (Sunday), not {t.weekday}",
        )
    if t.slot_minutes not in SLOT_LENGTHS:
        *shorter, longest = map(str, SLOT_LENGTHS)
        add(
            "SCHED-SLOT-LENGTH",
            f"每个时段应为{'、'.join(shorter)}或{longest}分钟，而不是{t.slot_minutes}分钟",
            f"a slot lasts {', '.join(shorter)} or {longest} minutes, not {t.slot_minutes}",
        )
    if t.capacity < 1:
        add(
            "SCHED-CAPACITY",
            f"每个时段至少接诊1人，而不是{t.capacity}人",
            f"a slot takes at least 1 patient, not {t.capacity}",
        )
    span = f"{t.start.isoformat('minutes')}-{t.end.isoformat('minutes')}"
    if _length(t) <= timedelta(0):
        add(
            "SCHED-TIMES",
            f"出诊结束时间应晚于开始时间（{span}）",
            f"the session must end after it starts ({span})",
        )
    elif t.slot_minutes in SLOT_LENGTHS and _slot_count(t) is None:
        add(
            "SCHED-TIMES",
            f"出诊时长（{span}）应为{t.slot_minutes}分钟的整数倍",
            f"the session ({span}) must be a whole number of {t.slot_minutes}-minute slots",
        )
    unknown = sorted(k for k in t.reserved if k not in RESERVABLE_CHANNELS)
    if unknown:
        add(
            "SCHED-QUOTA-UNKNOWN-CHANNEL",
            f"只能为{'、'.join(RESERVABLE_CHANNELS)}预留号源，不能为{'、'.join(unknown)}"
            "（网上预约为其余号源）",
            f"places can be reserved only for {', '.join(RESERVABLE_CHANNELS)}, "
            f"not {', '.join(unknown)} (online gets the rest)",
        )
    negative = sorted(k for k, v in t.reserved.items() if v < 0)
    if negative:
        add(
            "SCHED-QUOTA-NEGATIVE",
            f"预留号源数不能为负数：{'、'.join(negative)}",
            f"reserved places cannot be negative: {', '.join(negative)}",
        )
    slots = _slot_count(t)
    if slots is not None and t.capacity >= 1:
        places = slots * t.capacity
        reserved = sum(max(t.reserved.get(c, 0), 0) for c in RESERVABLE_CHANNELS)
        if reserved > places:
            add(
                "SCHED-QUOTA-EXCEEDS",
                f"预留号源共{reserved}个，超过本时段的{places}个号源",
                f"{reserved} reserved places exceed the session's {places} places",
            )
    if t.fee_fen < 0:
        add(
            "SCHED-FEE",
            f"挂号费不能为负数（{t.fee_fen}分）",
            f"the registration fee cannot be negative ({t.fee_fen} fen)",
        )
    return findings


def check_overlaps(templates: Sequence[SessionTemplate]) -> list[Finding]:
    """SCHED-OVERLAP for each pair of sessions on the same weekday whose times overlap: a doctor
    holds one session at a time, so overlapping sessions would double-book them (the issue).
    Sessions that touch (one ends when the next starts) are fine."""
    findings: list[Finding] = []
    for j, later in enumerate(templates):
        for i, earlier in enumerate(templates[:j]):
            if (
                earlier.weekday == later.weekday
                and earlier.start < earlier.end
                and later.start < later.end
                and earlier.start < later.end
                and later.start < earlier.end
            ):
                a = f"{earlier.start.isoformat('minutes')}-{earlier.end.isoformat('minutes')}"
                b = f"{later.start.isoformat('minutes')}-{later.end.isoformat('minutes')}"
                findings.append(
                    Finding(
                        "SCHED-OVERLAP",
                        "error",
                        f"第{i + 1}个出诊时段（{a}）与第{j + 1}个（{b}）在星期{later.weekday}重叠",
                        f"session {i + 1} ({a}) and session {j + 1} ({b}) overlap on weekday "
                        f"{later.weekday}",
                        f"Schedule.extension[{j}]",
                    )
                )
    return findings


def _spread(t: SessionTemplate, slots: int) -> list[dict[str, int]]:
    """Places per channel for each slot of one session.

    Place k of a channel reserving ``count`` places goes to slot floor((k + 0.5) * slots / count),
    so reserved places are spread over the session rather than all at its start; when that slot
    is full it goes to the next slot with room, wrapping around. The rest is online.
    """
    used = [0] * slots
    per_slot: list[dict[str, int]] = [{} for _ in range(slots)]
    for channel in RESERVABLE_CHANNELS:
        count = t.reserved.get(channel, 0)
        for k in range(count):
            target = (2 * k + 1) * slots // (2 * count)
            for step in range(slots):
                s = (target + step) % slots
                if used[s] < t.capacity:
                    used[s] += 1
                    per_slot[s][channel] = per_slot[s].get(channel, 0) + 1
                    break
    for s in range(slots):
        if used[s] < t.capacity:
            per_slot[s] = {ONLINE: t.capacity - used[s], **per_slot[s]}
    return per_slot


def generate_slots(
    templates: Sequence[SessionTemplate],
    *,
    first_day: date,
    days: int,
    holidays: Collection[date],
    tz: tzinfo,
    release: ReleasePolicy = ReleasePolicy(),
) -> list[SlotSpec]:
    """The slots of ``days`` days from ``first_day``: each session template on each day of its
    weekday that is not a holiday, cut into slots of ``slot_minutes`` on the local wall clock.

    Each slot's places are split between channels (:func:`_spread`); it is released (放号)
    ``release.days_before`` days before its local date at ``release.at``, and its unused reserved
    places open to every channel ``release.pool_hours_before`` hours before it starts (the issue;
    reserved quota of RULES.md FD-2). Sorted by start, then service type.

    Raises ValueError when a template fails :func:`validate_template`: callers validate first.
    """
    counts: list[int] = []
    for index, template in enumerate(templates):
        problems = validate_template(template, index)
        count = _slot_count(template)
        if problems or count is None:
            codes = ", ".join(f.code for f in problems)
            raise ValueError(f"session template {index} is not valid: {codes}")
        counts.append(count)
    specs: list[SlotSpec] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        if day in holidays:
            continue
        release_day = day - timedelta(days=release.days_before)
        release_at = datetime.combine(release_day, release.at, tzinfo=tz)
        for template, count in zip(templates, counts, strict=True):
            if template.weekday != day.isoweekday():
                continue
            step = timedelta(minutes=template.slot_minutes)
            first = datetime.combine(day, template.start.replace(tzinfo=None))
            for s, quotas in enumerate(_spread(template, count)):
                start = (first + s * step).replace(tzinfo=tz)
                specs.append(
                    SlotSpec(
                        start=start,
                        end=(first + (s + 1) * step).replace(tzinfo=tz),
                        quotas=quotas,
                        service_type=template.service_type,
                        fee_fen=template.fee_fen,
                        release_at=release_at,
                        pool_release_at=start - timedelta(hours=release.pool_hours_before),
                    )
                )
    specs.sort(key=lambda spec: (spec.start, spec.service_type))
    return specs
