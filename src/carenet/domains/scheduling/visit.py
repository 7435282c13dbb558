"""The day of the visit: check-in (签到) with a queue number, the queue position, calling the
next patient (叫号), no-shows (爽约) and the reminders (候诊提醒, the day-before 预约提醒).

Same shape as service.py: each function is one step inside the caller's unit of work, asks the
access layer, applies the pure rules, writes and queues messages in one transaction. Queue
numbers are given under a lock on the doctor's PractitionerRole row, so they never repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from carenet.domains.scheduling import model
from carenet.domains.scheduling.rules import (
    check_checkin,
    check_noshow,
    check_transition,
    queue_position,
    reminder_due,
)
from carenet.domains.scheduling.service import (
    SchedulingContext,
    appointment_for,
    check,
    local_time,
    practitioner_key,
    search_all,
)
from carenet.fhir import outcomes


@dataclass(frozen=True)
class QueueState:
    appointment: dict[str, Any]
    number: int | None  # 排队号 given at check-in
    position: int | None  # 1 = next to be called; None when not waiting
    called: bool


def _queue_key(appt: dict[str, Any]) -> str:
    """Whose queue: the doctor's role at the institution, else whoever the schedule named."""
    roles = model.participants(appt, "PractitionerRole")
    return roles[0] if roles else practitioner_key(appt)


def _queue_param(queue: str) -> tuple[str, str]:
    """The search parameter selecting a queue's appointments (a bare Appointment: itself)."""
    if queue.startswith("Appointment/"):
        return ("_id", queue.split("/", 1)[1])
    return ("actor", queue)


def _number(appt: dict[str, Any]) -> int:
    return int(model.ext_value(appt, model.QUEUE_NUMBER, "valuePositiveInt") or 0)


def _waiting(ctx: SchedulingContext, queue: str, day: date) -> list[dict[str, Any]]:
    """Appointments checked in to a queue on a day and not yet called, in queue order."""
    arrived = search_all(
        ctx.repo,
        "Appointment",
        [_queue_param(queue), ("status", "arrived"), ("date", day.isoformat())],
    )
    waiting = [
        a for a in arrived if model.ext(a, model.QUEUE_NUMBER) and not model.ext(a, model.CALLED)
    ]
    return sorted(waiting, key=lambda a: (_number(a), str(a["id"])))


def _position(waiting: list[dict[str, Any]], appointment_id: str) -> int | None:
    return queue_position([(_number(a), str(a["id"])) for a in waiting], appointment_id)


def check_in(ctx: SchedulingContext, appointment_id: str) -> QueueState:
    """签到: the patient has arrived; they join their doctor's queue for the day and an
    Encounter (status arrived) opens."""
    appt = appointment_for(ctx, "Appointment/$checkin", appointment_id)
    start = model.parse_dt(appt.get("start"), ctx.tz)
    end = model.parse_dt(appt.get("end"), ctx.tz)
    assert start is not None and end is not None  # written by book_appointment
    check(
        check_checkin(status=str(appt.get("status")), start=start, end=end, now=ctx.now, tz=ctx.tz)
    )
    queue = _queue_key(appt)
    if queue.startswith("PractitionerRole/"):
        ctx.repo.read_for_update("PractitionerRole", queue.split("/", 1)[1])  # numbers in order
    day = ctx.now.astimezone(ctx.tz).date()
    numbered = search_all(
        ctx.repo,
        "Appointment",
        [_queue_param(queue), ("status", "arrived,fulfilled"), ("date", day.isoformat())],
    )
    number = 1 + max((_number(a) for a in numbered), default=0)
    out = model.with_status(appt, "arrived")
    model.set_ext(out, model.CHECKED_IN, "valueDateTime", model.iso(ctx.now))
    model.set_ext(out, model.QUEUE_NUMBER, "valuePositiveInt", number)
    stored = ctx.write("Appointment", out)
    patient_id = model.patient_of(appt)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "arrived",
        "class": {"system": model.ACT_CODE, "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [
            {"individual": {"reference": ref}}
            for ref in model.participants(appt, "PractitionerRole")
            + model.participants(appt, "Practitioner")
        ],
        "appointment": [{"reference": f"Appointment/{appointment_id}"}],
        "period": {"start": model.iso(ctx.now)},
    }
    owner = model.owner_of(appt)
    if owner:
        encounter["meta"] = model.owner_tag(owner)
        encounter["serviceProvider"] = {"reference": f"Organization/{owner}"}
    if not encounter["participant"]:
        del encounter["participant"]
    ctx.write("Encounter", encounter)
    waiting = _waiting(ctx, queue, day)
    position = _position(waiting, appointment_id)
    if position is not None and patient_id and reminder_due(ctx.policy, position, position - 1):
        ctx.notify(ctx.repo.read("Patient", patient_id), "queue-ahead", {"ahead": position - 1})
    return QueueState(stored, number, position, False)


def queue_state(ctx: SchedulingContext, appointment_id: str) -> QueueState:
    """Where a checked-in patient stands in their doctor's queue."""
    appt = appointment_for(ctx, "Appointment/$queue", appointment_id, lock=False)
    number = model.ext_value(appt, model.QUEUE_NUMBER, "valuePositiveInt")
    called = bool(model.ext(appt, model.CALLED))
    position = None
    if appt.get("status") == "arrived" and not called:
        day = ctx.now.astimezone(ctx.tz).date()
        position = _position(_waiting(ctx, _queue_key(appt), day), appointment_id)
    return QueueState(appt, int(number) if number else None, position, called)


def call_next(ctx: SchedulingContext, role_id: str) -> dict[str, Any] | None:
    """叫号: the doctor finishes the current visit (Appointment fulfilled, Encounter finished)
    and calls the first patient waiting (Encounter in-progress; an SMS tells them). Whoever is
    now ``reminder_ahead`` places from the front gets a waiting reminder. None: nobody waits."""
    scope = ctx.guard.operation_scope("PractitionerRole/$call-next")
    try:
        role = ctx.repo.read_for_update("PractitionerRole", role_id)
    except outcomes.OperationOutcomeError:
        raise outcomes.not_found(f"PractitionerRole/{role_id} is not known") from None
    a = ctx.guard.actor
    org = ((role.get("organization") or {}).get("reference") or "").removeprefix("Organization/")
    if scope != "all":
        allowed = org in a.organizations and (
            a.role != "doctor"
            or (role.get("practitioner") or {}).get("reference") == a.practitioner
        )
        if not allowed:
            raise outcomes.not_found(f"PractitionerRole/{role_id} is not known")
    queue = f"PractitionerRole/{role_id}"
    day = ctx.now.astimezone(ctx.tz).date()
    for current in search_all(
        ctx.repo,
        "Appointment",
        [("actor", queue), ("status", "arrived"), ("date", day.isoformat())],
    ):
        if model.ext(current, model.CALLED):
            check(check_transition("arrived", "fulfilled"))
            ctx.write("Appointment", model.with_status(current, "fulfilled"))
            _encounter_to(ctx, current["id"], "finished")
    waiting = _waiting(ctx, queue, day)
    if not waiting:
        return None
    first, rest = waiting[0], waiting[1:]
    called = {k: v for k, v in first.items()}
    model.set_ext(called, model.CALLED, "valueDateTime", model.iso(ctx.now))
    stored = ctx.write("Appointment", model.with_status(called, "arrived"))
    _encounter_to(ctx, first["id"], "in-progress")
    patient_id = model.patient_of(first)
    if patient_id:
        ctx.notify(
            ctx.repo.read("Patient", patient_id),
            "queue-called",
            {"number": model.ext_value(first, model.QUEUE_NUMBER, "valuePositiveInt") or ""},
        )
    for i, appt in enumerate(rest):
        if reminder_due(ctx.policy, i + 1, i):
            pid = model.patient_of(appt)
            if pid:
                ctx.notify(ctx.repo.read("Patient", pid), "queue-ahead", {"ahead": i})
    return stored


def _encounter_to(ctx: SchedulingContext, appointment_id: str, status: str) -> None:
    for enc in search_all(
        ctx.repo, "Encounter", [("appointment", f"Appointment/{appointment_id}")]
    ):
        out = {k: v for k, v in enc.items() if k != "meta"}
        if (enc.get("meta") or {}).get("tag"):
            out["meta"] = {"tag": enc["meta"]["tag"]}
        out["status"] = status
        if status == "finished":
            out["period"] = {**(enc.get("period") or {}), "end": model.iso(ctx.now)}
        ctx.write("Encounter", out)


def mark_noshow(ctx: SchedulingContext, appointment_id: str) -> dict[str, Any]:
    """爽约: the patient did not come. Counts towards the online-booking suspension."""
    appt = appointment_for(ctx, "Appointment/$noshow", appointment_id)
    end = model.parse_dt(appt.get("end"), ctx.tz) or ctx.now
    check(check_noshow(status=str(appt.get("status")), end=end, now=ctx.now))
    return ctx.write("Appointment", model.with_status(appt, "noshow"))


# ------------------------------------------------------------------ reminders


def send_day_before_reminders(ctx: SchedulingContext, day: date) -> list[dict[str, Any]]:
    """Remind every patient booked on ``day`` (run the day before); each appointment is
    reminded once (the reminder is recorded on it)."""
    booked = search_all(ctx.repo, "Appointment", [("status", "booked"), ("date", day.isoformat())])
    reminded = []
    for appt in sorted(booked, key=lambda a: str(a["id"])):
        if model.ext(appt, model.REMINDED):
            continue
        appt = ctx.repo.read_for_update("Appointment", appt["id"])
        if appt.get("status") != "booked" or model.ext(appt, model.REMINDED):
            continue
        out = model.with_status(appt, "booked")
        model.set_ext(out, model.REMINDED, "valueDateTime", model.iso(ctx.now))
        reminded.append(ctx.write("Appointment", out))
        patient_id = model.patient_of(appt)
        start = model.parse_dt(appt.get("start"), ctx.tz)
        if patient_id and start is not None:
            ctx.notify(
                ctx.repo.read("Patient", patient_id),
                "appointment-reminder",
                {"time": local_time(ctx, start)},
            )
    return reminded
