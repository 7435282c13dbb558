"""Scheduling use cases (分时段预约): generate slots from session templates, book, cancel,
reschedule, check in, call the next patient, mark no-shows, stop a clinic, send reminders.

Each function is one step of one user action inside the caller's unit of work: it asks the
access layer (the actor's GuardedRepository) whether the actor may run the operation on this
data, applies the pure rules (rules.py), writes through the repository and queues messages in
the outbox — all in the caller's transaction, so a failure anywhere leaves nothing behind.

Capacity never goes over: a booking locks the patient's row and then the Slot's row
(``read_for_update``) and re-checks the quota under the lock; every step that locks several
rows locks them in the same order (Patient, Appointment, Slots by id, PractitionerRole), so
concurrent bookings, cancellations and reschedules queue instead of deadlocking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from carenet.access.guard import GuardedRepository
from carenet.adapters.notify.outbox import Notifier
from carenet.domains.scheduling import model
from carenet.domains.scheduling.rules import (
    ACTIVE_STATUSES,
    CHANNELS,
    Booker,
    BookingPolicy,
    PatientBookings,
    Quota,
    check_booking,
    check_cancel,
    choose_quota,
    slot_status,
)
from carenet.domains.scheduling.sessions import (
    ReleasePolicy,
    check_overlaps,
    generate_slots,
    validate_template,
)
from carenet.fhir import outcomes
from carenet.fhir.findings import Finding
from carenet.store.repository import Repository

# Refusals about capacity answer 409 Conflict (try another slot); other rules 422.
_CONFLICT_CODES = frozenset({"APPT-SLOT-FULL", "APPT-SLOT-UNAVAILABLE"})


@dataclass
class SchedulingContext:
    """What a scheduling step needs besides its input: who, where the data is, the rules'
    numbers, the clock, and the outbox. ``written`` collects what the step wrote, for the
    audit trail."""

    guard: GuardedRepository
    policy: BookingPolicy
    release: ReleasePolicy
    tz: ZoneInfo
    now: datetime
    notifier: Notifier | None = None
    holidays: frozenset[date] = frozenset()
    booker_verified: bool = False  # the booking account passed 实名认证
    written: list[dict[str, Any]] = field(default_factory=list)

    @property
    def repo(self) -> Repository:
        return self.guard.inner

    @property
    def role(self) -> str:
        return self.guard.actor.role

    def write(self, res_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        if resource.get("id"):
            stored, _ = self.repo.update(res_type, resource["id"], resource, method="PUT")
        else:
            stored = self.repo.create(res_type, resource)
        self.written.append(stored)
        return stored

    def notify(self, patient: dict[str, Any], template: str, params: dict[str, Any]) -> None:
        """An SMS to the patient's mobile number, if they gave one (sent only on commit)."""
        phone = next(
            (
                t.get("value")
                for t in patient.get("telecom") or []
                if t.get("system") == "phone" and t.get("value")
            ),
            None,
        )
        if self.notifier is not None and phone:
            self.notifier.send(
                self.repo.conn, "sms", str(phone), template, params, buffer=self.repo
            )


def refuse(findings: list[Finding]) -> outcomes.OperationOutcomeError:
    errors = [f for f in findings if f.is_error]
    status = 409 if {f.code for f in errors} <= _CONFLICT_CODES else 422
    return outcomes.OperationOutcomeError(status, [f.to_issue() for f in errors])


def check(findings: list[Finding]) -> None:
    if any(f.is_error for f in findings):
        raise refuse(findings)


def _finding(code: str, zh: str, en: str, expression: str | None = None) -> Finding:
    return Finding(code, "error", zh, en, expression)


def local_time(ctx: SchedulingContext, dt: datetime) -> str:
    return dt.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ publishing


def generate_schedule_slots(
    ctx: SchedulingContext, schedule_id: str, first_day: date, days: int
) -> list[dict[str, Any]]:
    """Slots of a Schedule's session templates for ``days`` days from ``first_day`` (the rolling
    window); slots that already exist (same start and visit type) are left alone, so running it
    every day only adds the new last day."""
    scope = ctx.guard.operation_scope("Schedule/$generate")
    schedule = ctx.repo.read_for_update("Schedule", schedule_id)
    if not ctx.guard.can_see(schedule, scope):
        raise outcomes.not_found(f"Schedule/{schedule_id} is not known")
    if scope != "all" and model.owner_of(schedule) not in ctx.guard.actor.organizations:
        raise outcomes.not_found(f"Schedule/{schedule_id} is not known")
    if schedule.get("active") is False:
        raise refuse(
            [
                _finding(
                    "SCHED-INACTIVE", "排班已停用", "the schedule is not active", "Schedule.active"
                )
            ]
        )
    templates, findings = model.session_templates(schedule)
    for i, t in enumerate(templates):
        findings += validate_template(t, i)
    findings += check_overlaps(templates)
    if not templates and not findings:
        findings.append(
            _finding(
                "SCHED-NO-SESSIONS",
                "排班没有出诊时段",
                "the schedule has no session templates",
                "Schedule.extension",
            )
        )
    check(findings)
    specs = generate_slots(
        templates,
        first_day=first_day,
        days=days,
        holidays=ctx.holidays | model.holidays_of(schedule),
        tz=ctx.tz,
        release=model.release_policy(schedule, ctx.release),
    )
    if not specs:
        return []
    lo = specs[0].start.astimezone(ctx.tz).date()
    hi = specs[-1].start.astimezone(ctx.tz).date() + timedelta(days=1)
    existing = [
        (model.parse_dt(s.get("start"), ctx.tz), model.parse_dt(s.get("end"), ctx.tz))
        for s in search_all(
            ctx.repo,
            "Slot",
            [
                ("schedule", f"Schedule/{schedule_id}"),
                ("start", f"ge{lo.isoformat()}"),
                ("start", f"lt{hi.isoformat()}"),
            ],
        )
    ]
    created = []
    for spec in specs:
        # A slot already there at that time (from this template, or from an earlier one with
        # another slot length) stays; a new one never overlaps it.
        if any(a and b and a < spec.end and spec.start < b for a, b in existing):
            continue
        created.append(ctx.write("Slot", model.slot_resource(schedule, spec)))
    return created


def stop_clinic(
    ctx: SchedulingContext, schedule_id: str, start: datetime, end: datetime, reason: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """停诊: the Schedule's slots starting in [start, end) become busy-unavailable and their
    active appointments are cancelled (reason ``prov``), each patient told by SMS.
    Returns (slots closed, appointments cancelled)."""
    scope = ctx.guard.operation_scope("Schedule/$stop-clinic")
    schedule = ctx.repo.read("Schedule", schedule_id)
    if scope != "all" and model.owner_of(schedule) not in ctx.guard.actor.organizations:
        raise outcomes.not_found(f"Schedule/{schedule_id} is not known")
    if end <= start:
        raise outcomes.bad_request(
            "end must be after start", "Parameters.parameter.where(name='end')"
        )
    slots = search_all(
        ctx.repo,
        "Slot",
        [
            ("schedule", f"Schedule/{schedule_id}"),
            ("start", f"ge{start.isoformat()}"),
            ("start", f"lt{end.isoformat()}"),
        ],
    )
    closed: list[dict[str, Any]] = []
    cancelled: list[dict[str, Any]] = []
    for slot in sorted(slots, key=lambda s: str(s["id"])):
        slot = ctx.repo.read_for_update("Slot", slot["id"])
        if slot.get("status") in ("busy-unavailable", "entered-in-error"):
            continue
        for appt in search_all(
            ctx.repo,
            "Appointment",
            [("slot", f"Slot/{slot['id']}"), ("status", ",".join(sorted(ACTIVE_STATUSES)))],
        ):
            appt = ctx.repo.read_for_update("Appointment", appt["id"])
            if appt.get("status") not in ACTIVE_STATUSES - {"arrived"}:
                continue
            out = model.with_status(appt, "cancelled")
            out["cancelationReason"] = model.cancellation_reason("prov", f"停诊 {reason}")
            cancelled.append(ctx.write("Appointment", out))
            patient_id = model.patient_of(appt)
            if patient_id:
                ctx.notify(
                    ctx.repo.read("Patient", patient_id),
                    "clinic-stopped",
                    {
                        "time": local_time(ctx, model.slot_view(slot, ctx.tz).start),
                        "reason": reason,
                    },
                )
        quotas = {c: Quota(q.capacity, 0) for c, q in model.quotas_of(slot).items()}
        closed.append(ctx.write("Slot", model.with_quotas(slot, quotas, "busy-unavailable")))
    return closed, cancelled


# ------------------------------------------------------------------ booking


def search_all(repo: Repository, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every match of an internal search, page after page (a day's slots, a node's bookings)."""
    result = repo.search(rtype, [*params, ("_count", str(repo.max_count))])
    matches = list(result.matches)
    while next_link := result.links.get("next"):
        result = repo.search(rtype, parse_qsl(next_link.split("?", 1)[1]))
        matches.extend(result.matches)
    return matches


def practitioner_key(appointment: dict[str, Any]) -> str:
    for rtype in ("Practitioner", "PractitionerRole", "HealthcareService", "Location"):
        refs = model.participants(appointment, rtype)
        if refs:
            return refs[0]
    return f"Appointment/{appointment.get('id')}"


def _patient_bookings(
    ctx: SchedulingContext, patient_id: str, *, excluding: str | None = None
) -> PatientBookings:
    since = ctx.now - timedelta(days=ctx.policy.noshow_window_days)
    # One query for both rules (the future bookings, the recent no-shows), split here: the
    # patient's appointments starting from the earlier of the two bounds. Run on every $book,
    # so a prebuilt statement rather than a compiled search (it was 40% of a booking's CPU).
    found = ctx.repo.referencing(
        "Appointment",
        "patient",
        f"Patient/{patient_id}",
        date_param="date",
        since_ms=int(min(since, ctx.now).timestamp() * 1000),
    )
    future: list[tuple[datetime, str]] = []
    noshows: list[datetime] = []
    # Instants are stored to the second: one starting within the current second is future, as
    # a date search "ge now" would have it.
    now = ctx.now.replace(microsecond=0)
    for a in found:
        start = model.parse_dt(a.get("start"), ctx.tz)
        status = a.get("status")
        if start is None:
            continue
        if status == "noshow":
            if start >= since:
                noshows.append(start)
        elif status in ACTIVE_STATUSES and start >= now and a.get("id") != excluding:
            future.append((start, practitioner_key(a)))
    return PatientBookings(future=future, noshows=noshows)


@dataclass(frozen=True)
class _Where:
    """Who and where a slot's appointments are with: from its Schedule."""

    actors: tuple[str, ...]
    practitioner_key: str
    organization: str | None


def _where(ctx: SchedulingContext, slot: dict[str, Any]) -> _Where:
    schedule_ref = (slot.get("schedule") or {}).get("reference", "")
    # The Schedule and its actors in one statement; an actor not found that way is read on
    # its own (and is a 404 there if it does not exist, as before).
    schedule, targets = ctx.repo.read_with_targets(
        "Schedule", schedule_ref.split("/", 1)[-1], "actor"
    )
    actors: list[str] = []
    key = schedule_ref
    for role_ref in model.refs_of(schedule, "actor", "PractitionerRole"):
        actors.append(role_ref)
        role = targets.get(role_ref) or ctx.repo.read("PractitionerRole", role_ref.split("/", 1)[1])
        prac = (role.get("practitioner") or {}).get("reference")
        if isinstance(prac, str) and prac.startswith("Practitioner/"):
            actors.append(prac)
            key = prac
        elif key == schedule_ref:
            key = role_ref
    for rtype in ("Practitioner", "HealthcareService", "Location"):
        for ref in model.refs_of(schedule, "actor", rtype):
            if ref not in actors:
                actors.append(ref)
                if key == schedule_ref and rtype != "Location":
                    key = ref
    return _Where(tuple(actors), key, model.owner_of(slot) or model.owner_of(schedule))


def _booker(ctx: SchedulingContext, slot_org: str | None) -> Booker:
    """The channels a booker may use: patients and guardians book online; staff at the
    slot's own institution register on site; staff elsewhere use the referral and family-
    doctor green channels (FD-2); backend services any."""
    a = ctx.guard.actor
    if a.role == "patient":
        return Booker(verified=ctx.booker_verified, channels=frozenset({"online"}))
    if a.role == "system":
        return Booker(verified=True, channels=frozenset(CHANNELS))
    if slot_org is not None and slot_org in a.organizations:
        return Booker(verified=True, channels=frozenset({"onsite"}))
    return Booker(verified=True, channels=frozenset({"referral", "contract"}))


def _patient_for(ctx: SchedulingContext, patient_id: str, slot_org: str | None) -> dict[str, Any]:
    """The patient a booking is for, if the actor may act for them (404 otherwise, as for a
    record that does not exist): patients for themselves and their wards; staff for anyone at
    their own institution's desk, and for patients whose record they may see elsewhere."""
    a = ctx.guard.actor
    try:
        patient = ctx.repo.read_for_update("Patient", patient_id)
    except outcomes.OperationOutcomeError:
        raise outcomes.not_found(
            f"Patient/{patient_id} is not known", "Parameters.parameter.where(name='patient')"
        ) from None
    if a.role == "patient":
        ok = patient_id in a.patients
    elif a.role == "system":
        ok = True
    else:
        ok = (slot_org is not None and slot_org in a.organizations) or ctx.guard.can_see(
            patient, "organization"
        )
    if not ok:
        raise outcomes.not_found(
            f"Patient/{patient_id} is not known", "Parameters.parameter.where(name='patient')"
        )
    return patient


def _take(ctx: SchedulingContext, slot: dict[str, Any], channel: str) -> tuple[dict[str, Any], str]:
    view = model.slot_view(slot, ctx.tz)
    taken = choose_quota(view, channel, ctx.now)
    assert taken is not None  # check_booking refused a full slot
    quotas = dict(view.quotas)
    q = quotas[taken]
    quotas[taken] = Quota(q.capacity, q.booked + 1)
    return ctx.write("Slot", model.with_quotas(slot, quotas, slot_status(quotas))), taken


def _give_back(ctx: SchedulingContext, slot_id: str, quota: str | None) -> dict[str, Any]:
    slot = ctx.repo.read_for_update("Slot", slot_id)
    quotas = model.quotas_of(slot)
    key = quota if quota in quotas else next(iter(quotas))
    q = quotas[key]
    quotas[key] = Quota(q.capacity, max(q.booked - 1, 0))
    status = slot.get("status")
    if status in ("free", "busy"):
        status = slot_status(quotas)
    return ctx.write("Slot", model.with_quotas(slot, quotas, str(status)))


def _refuse_if_full(ctx: SchedulingContext, slot: dict[str, Any]) -> None:
    """Release-time storms: most requests are for a slot that is already full. Refuse those
    before taking any lock (the decision is re-made under the lock for the others)."""
    view = model.slot_view(slot, ctx.tz)
    if view.status in ("free", "busy") and all(q.free == 0 for q in view.quotas.values()):
        raise refuse([_slot_full()])


def _slot_full() -> Finding:
    return Finding(
        "APPT-SLOT-FULL",
        "error",
        "该时段号源已约满",
        "this slot is fully booked",
        "Parameters.parameter.where(name='slot')",
    )


def _book_into(
    ctx: SchedulingContext,
    slot: dict[str, Any],
    patient_id: str,
    channel: str,
    *,
    excluding: str | None = None,
) -> dict[str, Any]:
    """Under the patient's and the slot's locks: apply the booking rules (the patient's other
    bookings, ``excluding`` the one being moved), take the quota, write the Appointment."""
    where = _where(ctx, slot)
    check(
        check_booking(
            ctx.policy,
            booker=_booker(ctx, where.organization),
            channel=channel,
            slot=model.slot_view(slot, ctx.tz),
            practitioner=where.practitioner_key,
            bookings=_patient_bookings(ctx, patient_id, excluding=excluding),
            now=ctx.now,
            tz=ctx.tz,
        )
    )
    _, taken = _take(ctx, slot, channel)
    return ctx.write(
        "Appointment",
        model.new_appointment(
            slot=slot,
            patient_id=patient_id,
            actors=where.actors,
            channel=channel,
            quota=taken,
            booked_by=ctx.guard.actor.agent,
            created=model.iso(ctx.now),
        ),
    )


def book_appointment(
    ctx: SchedulingContext, slot_id: str, patient_id: str, channel: str | None
) -> dict[str, Any]:
    """Book ``patient_id`` into a slot; returns the Appointment (status booked)."""
    ctx.guard.operation_scope("Appointment/$book")
    channel = channel or _default_channel(ctx)
    peek = _read_slot(ctx, slot_id, lock=False)
    _refuse_if_full(ctx, peek)
    slot_org = model.owner_of(peek)
    patient = _patient_for(ctx, patient_id, slot_org)  # locks the patient first
    slot = _read_slot(ctx, slot_id, lock=True)
    appointment = _book_into(ctx, slot, patient_id, channel)
    ctx.notify(
        patient,
        "appointment-booked",
        {"time": local_time(ctx, model.slot_view(slot, ctx.tz).start)},
    )
    return appointment


def _default_channel(ctx: SchedulingContext) -> str:
    return "online" if ctx.role == "patient" else "onsite"


def _read_slot(ctx: SchedulingContext, slot_id: str, *, lock: bool) -> dict[str, Any]:
    try:
        if lock:
            return ctx.repo.read_for_update("Slot", slot_id)
        return ctx.repo.read("Slot", slot_id)
    except outcomes.OperationOutcomeError:
        raise outcomes.not_found(
            f"Slot/{slot_id} is not known", "Parameters.parameter.where(name='slot')"
        ) from None


def appointment_for(
    ctx: SchedulingContext, operation: str, appointment_id: str, *, lock: bool = True
) -> dict[str, Any]:
    """The Appointment an operation acts on (locked unless ``lock`` is False), if the actor may
    see it (404 otherwise)."""
    scope = ctx.guard.operation_scope(operation)
    read = ctx.repo.read_for_update if lock else ctx.repo.read
    try:
        appt = read("Appointment", appointment_id)
    except outcomes.OperationOutcomeError:
        raise outcomes.not_found(f"Appointment/{appointment_id} is not known") from None
    if not ctx.guard.can_see(appt, scope):
        raise outcomes.not_found(f"Appointment/{appointment_id} is not known")
    return appt


def cancel_appointment(
    ctx: SchedulingContext, appointment_id: str, reason: str | None
) -> dict[str, Any]:
    """Cancel a booking before the cut-off (staff: any time); its capacity is returned."""
    appt = appointment_for(ctx, "Appointment/$cancel", appointment_id)
    start = model.parse_dt(appt.get("start"), ctx.tz) or ctx.now
    check(
        check_cancel(
            ctx.policy,
            status=str(appt.get("status")),
            start=start,
            now=ctx.now,
            by_patient=ctx.role == "patient",
        )
    )
    return _cancel(ctx, appt, reason)


def _cancel(ctx: SchedulingContext, appt: dict[str, Any], reason: str | None) -> dict[str, Any]:
    slot_id = model.slot_id_of(appt)
    if slot_id:
        _give_back(ctx, slot_id, model.ext_value(appt, model.QUOTA_TAKEN, "valueCode"))
    out = model.with_status(appt, "cancelled")
    out["cancelationReason"] = model.cancellation_reason(
        "pat" if ctx.role == "patient" else "other", reason
    )
    return ctx.write("Appointment", out)


def reschedule_appointment(
    ctx: SchedulingContext, appointment_id: str, new_slot_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Move a booking to another slot as one step: the old slot is released only if the new
    one is taken. Returns (new appointment, cancelled old one)."""
    # Unlocked first: the patient's row must be locked before the appointment's.
    peek = appointment_for(ctx, "Appointment/$reschedule", appointment_id, lock=False)
    patient_id = model.patient_of(peek)
    if patient_id is None:
        raise refuse(
            [_finding("APPT-NO-PATIENT", "预约没有患者", "the appointment names no patient")]
        )
    new_slot = _read_slot(ctx, new_slot_id, lock=False)
    patient = _patient_for(ctx, patient_id, model.owner_of(new_slot))  # lock order: Patient,
    appt = ctx.repo.read_for_update("Appointment", appointment_id)  # Appointment, Slots
    old_slot_id = model.slot_id_of(appt)
    if old_slot_id == new_slot_id:
        raise refuse(
            [
                _finding(
                    "APPT-SAME-SLOT",
                    "新时段与原时段相同",
                    "the new slot is the slot already booked",
                    "Parameters.parameter.where(name='slot')",
                )
            ]
        )
    start = model.parse_dt(appt.get("start"), ctx.tz) or ctx.now
    findings = check_cancel(
        ctx.policy,
        status=str(appt.get("status")),
        start=start,
        now=ctx.now,
        by_patient=ctx.role == "patient",
    )
    check(findings)
    for sid in sorted(s for s in (old_slot_id, new_slot_id) if s):
        ctx.repo.read_for_update("Slot", sid)
    new_slot = _read_slot(ctx, new_slot_id, lock=True)
    channel = str(model.ext_value(appt, model.CHANNEL, "valueCode") or _default_channel(ctx))
    new = _book_into(ctx, new_slot, patient_id, channel, excluding=appointment_id)
    old = _cancel(ctx, appt, f"改约至 Appointment/{new['id']} / rescheduled")
    ctx.notify(
        patient,
        "appointment-rescheduled",
        {"time": local_time(ctx, model.slot_view(new_slot, ctx.tz).start)},
    )
    return new, old
