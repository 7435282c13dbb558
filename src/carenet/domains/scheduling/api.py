"""The scheduling domain's FHIR operations: $book, $cancel, $reschedule, $checkin, $noshow and
$queue on Appointment, $call-next on PractitionerRole, $generate and $stop-clinic on Schedule.

Each handler turns Parameters into a service call and the result back into Parameters; the
runner (api/operations.py) checks SMART scopes and records the audit event, the service checks
the actor's access and the rules.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from carenet.api.operations import Operation, OperationCall, Param, parameters
from carenet.domains.scheduling import policy, service, visit
from carenet.domains.scheduling.availability import AvailabilityQuery, find_availability
from carenet.domains.scheduling.rules import CHANNELS
from carenet.fhir import outcomes


def context(call: OperationCall) -> service.SchedulingContext:
    """The scheduling context of a call: the rules' numbers from Settings, the clock, the
    outbox, and whether the booking account is real-name verified."""
    services = call.req.services
    s = services.settings
    tz = ZoneInfo(s.timezone)
    principal = call.req.principal
    # Read with the token, in the same transaction (a thousand bookers at release time
    # should not read their account row three times each).
    verified = principal is not None and principal.real_name_verified
    return service.SchedulingContext(
        guard=call.repo,
        policy=policy.booking_policy(s),
        release=policy.release_policy(s),
        tz=tz,
        now=services.clock().astimezone(tz),
        notifier=services.notifier,
        holidays=policy.holidays(s),
        booker_verified=verified,
    )


def _done(call: OperationCall, ctx: service.SchedulingContext, *patients: str | None) -> None:
    call.written.extend(ctx.written)
    call.patients.extend(f"Patient/{p}" for p in patients if p)


def _channel(call: OperationCall) -> str | None:
    channel = call.one("channel")
    if channel is not None and channel not in CHANNELS:
        raise outcomes.bad_request(
            f"channel must be one of {', '.join(CHANNELS)}",
            "Parameters.parameter.where(name='channel')",
            code="code-invalid",
        )
    return channel


def book(call: OperationCall) -> dict[str, Any]:
    slot_id = call.reference("slot", "Slot", required=True)
    patient_id = call.reference("patient", "Patient", required=True)
    assert slot_id is not None and patient_id is not None
    ctx = context(call)
    appointment = service.book_appointment(ctx, slot_id, patient_id, _channel(call))
    _done(call, ctx, patient_id)
    return parameters(appointment=appointment)


def cancel(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    appointment = service.cancel_appointment(ctx, call.res_id, call.one("reason"))
    _done(call, ctx, _patient(appointment))
    return parameters(appointment=appointment)


def reschedule(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    slot_id = call.reference("slot", "Slot", required=True)
    assert slot_id is not None
    ctx = context(call)
    new, old = service.reschedule_appointment(ctx, call.res_id, slot_id)
    _done(call, ctx, _patient(new))
    return parameters(appointment=new, cancelled=old)


def checkin(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    state = visit.check_in(ctx, call.res_id)
    _done(call, ctx, _patient(state.appointment))
    return _queue_parameters(state)


def queue(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    state = visit.queue_state(ctx, call.res_id)
    call.written.append(state.appointment)  # what was looked at, for the audit event
    _done(call, ctx, _patient(state.appointment))
    return _queue_parameters(state)


def _queue_parameters(state: visit.QueueState) -> dict[str, Any]:
    return parameters(
        appointment=state.appointment,
        number=state.number,
        position=state.position,
        ahead=None if state.position is None else state.position - 1,
        called=state.called,
    )


def noshow(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    appointment = visit.mark_noshow(ctx, call.res_id)
    _done(call, ctx, _patient(appointment))
    return parameters(appointment=appointment)


def call_next(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    called = visit.call_next(ctx, call.res_id)
    _done(call, ctx, *(_patient(r) for r in ctx.written if r.get("resourceType") == "Appointment"))
    return parameters(appointment=called, waiting=called is not None)


def generate(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    first = _date(call, "start") or ctx.now.date()
    days = call.one("days")
    days = ctx.policy.window_days if days is None else _int(days, "days")
    if not 1 <= days <= 366:
        raise outcomes.bad_request(
            "days must be between 1 and 366", "Parameters.parameter.where(name='days')"
        )
    created = service.generate_schedule_slots(ctx, call.res_id, first, days)
    _done(call, ctx)
    return parameters(created=len(created), slot=created)


def stop(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    ctx = context(call)
    start = _datetime(call, "start", ctx.tz)
    end = _datetime(call, "end", ctx.tz)
    reason = call.one("reason", required=True)
    closed, cancelled = service.stop_clinic(ctx, call.res_id, start, end, str(reason))
    _done(call, ctx, *(_patient(a) for a in cancelled))
    return parameters(closed=len(closed), cancelled=cancelled)


def availability(call: OperationCall) -> dict[str, Any]:
    ctx = context(call)
    day = _date(call, "date") or ctx.now.date()
    channel = _channel(call) or "online"
    query = AvailabilityQuery(
        day=day,
        organization=call.reference("organization", "Organization"),
        level=call.one("level"),
        department=call.one("department"),
        practitioner=call.reference("practitioner", "Practitioner"),
        region=call.one("region"),
        service_type=call.one("service-type"),
        channel=channel,
    )
    out: list[dict[str, Any]] = []
    for a in find_availability(ctx, query):
        parts: list[dict[str, Any]] = [
            {"name": "schedule", "valueReference": _ref(a.schedule)},
            {"name": "free", "valueInteger": a.free},
        ]
        if a.organization is not None:
            parts.append({"name": "organization", "valueReference": _ref(a.organization)})
        if a.role is not None:
            parts.append({"name": "practitionerRole", "valueReference": _ref(a.role)})
            prac = a.role.get("practitioner")
            if isinstance(prac, dict) and prac.get("reference"):
                parts.append({"name": "practitioner", "valueReference": prac})
            for specialty in a.role.get("specialty") or []:
                parts.append({"name": "department", "valueCodeableConcept": specialty})
        parts += [{"name": "slot", "resource": s} for s in a.slots]
        out.append({"name": "availability", "part": parts})
    result: dict[str, Any] = {"resourceType": "Parameters"}
    if out:
        result["parameter"] = out
    return result


def _ref(resource: dict[str, Any]) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"{resource['resourceType']}/{resource['id']}"}
    name = resource.get("name")
    if isinstance(name, str):
        ref["display"] = name
    elif isinstance(name, list) and name and isinstance(name[0], dict) and name[0].get("text"):
        ref["display"] = name[0]["text"]
    return ref


def _patient(appointment: dict[str, Any] | None) -> str | None:
    from carenet.domains.scheduling.model import patient_of

    return patient_of(appointment) if appointment else None


def _date(call: OperationCall, name: str) -> date | None:
    value = call.one(name)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise outcomes.bad_request(
            f"{name} must be a date (YYYY-MM-DD)", f"Parameters.parameter.where(name='{name}')"
        ) from None


def _datetime(call: OperationCall, name: str, tz: ZoneInfo) -> datetime:
    value = call.one(name, required=True)
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise outcomes.bad_request(
            f"{name} must be a dateTime", f"Parameters.parameter.where(name='{name}')"
        ) from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise outcomes.bad_request(
            f"{name} must be an integer", f"Parameters.parameter.where(name='{name}')"
        ) from None


_APPOINTMENT_OUT = Param(
    "appointment", "out", "Appointment", 1, "1", "The appointment as it now is"
)
_CHANNEL = Param(
    "channel",
    "in",
    "code",
    0,
    "1",
    "online (patients; the default for them) | onsite (the institution's own desk; the "
    "default for staff) | referral | contract (green channels, FD-2)",
)
_QUEUE_OUT = (
    _APPOINTMENT_OUT,
    Param("number", "out", "integer", 0, "1", "排队号: the number given at check-in"),
    Param("position", "out", "integer", 0, "1", "1 = next to be called; absent when not waiting"),
    Param("ahead", "out", "integer", 0, "1", "patients before this one"),
    Param("called", "out", "boolean", 1, "1", "the doctor has called this patient"),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "availability",
        "Slot",
        instance=False,
        affects_state=False,
        needs="r",
        title="Find places to book (号源查询)",
        description=(
            "Free slots of a day that can be booked now through a channel, grouped by schedule, "
            "narrowed by institution, hospital level, department, practitioner, visit type and "
            "region. Open to everyone, like the directory."
        ),
        parameters=(
            Param("date", "in", "date", 0, "1", "The day (default: today)"),
            Param("organization", "in", "Reference", 0, "1", "The institution"),
            Param(
                "level",
                "in",
                "code",
                0,
                "1",
                "医院等级: 3A, 2A, ... or a grade (3, 2) for all its ranks",
            ),
            Param("department", "in", "code", 0, "1", "诊疗科目 code of the department"),
            Param("practitioner", "in", "Reference", 0, "1", "The doctor (any of their roles)"),
            Param("region", "in", "code", 0, "1", "GB/T 2260 code of a province, city or county"),
            Param("service-type", "in", "code", 0, "1", "Visit type: general, expert, ..."),
            _CHANNEL,
            Param(
                "availability",
                "out",
                "",
                0,
                "*",
                "One per schedule with places",
                parts=(
                    Param("schedule", "out", "Reference", 1, "1"),
                    Param("free", "out", "integer", 1, "1", "Places bookable now"),
                    Param("organization", "out", "Reference", 0, "1"),
                    Param("practitionerRole", "out", "Reference", 0, "1"),
                    Param("practitioner", "out", "Reference", 0, "1"),
                    Param("department", "out", "CodeableConcept", 0, "*"),
                    Param("slot", "out", "Slot", 1, "*", "The free slots, by start"),
                ),
            ),
        ),
        handler=availability,
    ),
    Operation(
        "book",
        "Appointment",
        instance=False,
        affects_state=True,
        needs="c",
        title="Book a slot (预约挂号)",
        description=(
            "Book a patient into a Slot. Refusals are coded: APPT-REALNAME-REQUIRED, "
            "APPT-CHANNEL-NOT-ALLOWED, APPT-SLOT-UNAVAILABLE, APPT-SLOT-PAST, APPT-BEYOND-WINDOW, "
            "APPT-NOT-RELEASED, APPT-SUSPENDED, APPT-DUPLICATE-DAY, APPT-TOO-MANY (422) and "
            "APPT-SLOT-FULL (409)."
        ),
        parameters=(
            Param("slot", "in", "Reference", 1, "1", "The Slot to book"),
            Param("patient", "in", "Reference", 1, "1", "The Patient the booking is for"),
            _CHANNEL,
            _APPOINTMENT_OUT,
        ),
        handler=book,
    ),
    Operation(
        "cancel",
        "Appointment",
        instance=True,
        affects_state=True,
        needs="u",
        title="Cancel a booking (取消预约)",
        description=(
            "Cancel up to the cut-off before the start (patients; staff at any time); the "
            "slot's capacity is returned. APPT-WRONG-STATE, APPT-CANCEL-CUTOFF (422)."
        ),
        parameters=(
            Param("reason", "in", "string", 0, "1", "Why (recorded as cancelationReason.text)"),
            _APPOINTMENT_OUT,
        ),
        handler=cancel,
    ),
    Operation(
        "reschedule",
        "Appointment",
        instance=True,
        affects_state=True,
        needs="cu",
        title="Move a booking to another slot (改约)",
        description=(
            "One atomic step: the new slot is booked under the same rules as $book and the old "
            "booking is cancelled only if it was."
        ),
        parameters=(
            Param("slot", "in", "Reference", 1, "1", "The new Slot"),
            _APPOINTMENT_OUT,
            Param("cancelled", "out", "Appointment", 1, "1", "The old appointment, cancelled"),
        ),
        handler=reschedule,
    ),
    Operation(
        "checkin",
        "Appointment",
        instance=True,
        affects_state=True,
        needs="u",
        title="Check in (签到)",
        description=(
            "On the day of the visit, before the slot ends: status arrived, a queue number, an "
            "Encounter (arrived). APPT-WRONG-STATE, APPT-CHECKIN-WRONG-DAY, APPT-CHECKIN-TOO-LATE."
        ),
        parameters=_QUEUE_OUT,
        handler=checkin,
    ),
    Operation(
        "queue",
        "Appointment",
        instance=True,
        affects_state=False,
        needs="r",
        title="Where am I in the queue (候诊进度)",
        description="The queue number and position of a checked-in appointment.",
        parameters=_QUEUE_OUT,
        handler=queue,
    ),
    Operation(
        "noshow",
        "Appointment",
        instance=True,
        affects_state=True,
        needs="u",
        title="Mark a no-show (爽约)",
        description=(
            "After the slot has ended: status noshow. No-shows count towards the online "
            "booking suspension (APPT-SUSPENDED)."
        ),
        parameters=(_APPOINTMENT_OUT,),
        handler=noshow,
    ),
    Operation(
        "call-next",
        "PractitionerRole",
        instance=True,
        affects_state=True,
        needs="r",
        title="Call the next patient (叫号)",
        description=(
            "Finishes the visit in progress (Appointment fulfilled, Encounter finished) and "
            "calls the first patient waiting (Encounter in-progress, an SMS); the patient now "
            "the configured number of places from the front gets a waiting reminder."
        ),
        parameters=(
            Param("appointment", "out", "Appointment", 0, "1", "The appointment called"),
            Param("waiting", "out", "boolean", 1, "1", "false when nobody was waiting"),
        ),
        handler=call_next,
    ),
    Operation(
        "generate",
        "Schedule",
        instance=True,
        affects_state=True,
        needs="c",
        title="Generate slots (生成号源)",
        description=(
            "Slots from the Schedule's session templates for a rolling window, skipping "
            "holidays; existing slots are kept, so it can run every day. SCHED-* findings (422) "
            "for invalid templates."
        ),
        parameters=(
            Param("start", "in", "date", 0, "1", "First day (default: today)"),
            Param("days", "in", "integer", 0, "1", "Number of days (default: the booking window)"),
            Param("created", "out", "integer", 1, "1", "Slots created"),
            Param("slot", "out", "Slot", 0, "*", "The slots created"),
        ),
        handler=generate,
    ),
    Operation(
        "stop-clinic",
        "Schedule",
        instance=True,
        affects_state=True,
        needs="u",
        title="Stop a clinic (停诊)",
        description=(
            "Slots starting in [start, end) become busy-unavailable; their bookings are "
            "cancelled (reason prov) and each patient gets an SMS."
        ),
        parameters=(
            Param("start", "in", "dateTime", 1, "1", "From"),
            Param("end", "in", "dateTime", 1, "1", "Until (exclusive)"),
            Param("reason", "in", "string", 1, "1", "Why, told to the patients"),
            Param("closed", "out", "integer", 1, "1", "Slots closed"),
            Param("cancelled", "out", "Appointment", 0, "*", "Appointments cancelled"),
        ),
        handler=stop,
    ),
)
