"""How scheduling objects sit in FHIR R4 resources: the CareNet extensions on Schedule, Slot and
Appointment, and conversions between those resources and the plain values the rules take.

Pure: dicts in, dicts and dataclasses out. FHIR has no element for a session template, a
per-channel quota or a queue number, so they are extensions under CARENET_BASE (documented in
docs/scheduling.md); everything else uses the standard elements (Slot.status, Appointment.status,
Appointment.slot, Appointment.participant, Appointment.cancelationReason, Encounter.appointment).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from typing import Any

from carenet.domains.scheduling.rules import CHANNELS, Quota, SlotView
from carenet.domains.scheduling.sessions import ReleasePolicy, SessionTemplate, SlotSpec
from carenet.fhir.findings import Finding
from carenet.fhir.identifiers import CARENET_BASE, DATA_ORIGIN, OWNER_ORGANIZATION

SD = f"{CARENET_BASE}/StructureDefinition"
SESSION = f"{SD}/schedule-session"  # one per session template (出诊时段)
HOLIDAY = f"{SD}/schedule-holiday"  # valueDate: no slots that day
RELEASE = f"{SD}/schedule-release"  # 放号 rule of this schedule
QUOTA = f"{SD}/slot-quota"  # channel, capacity, booked
RELEASE_AT = f"{SD}/slot-release-at"  # valueDateTime: not bookable before
POOL_RELEASE_AT = f"{SD}/slot-pool-release-at"  # valueDateTime: reserved quota opens to all
FEE = f"{SD}/registration-fee"  # valueMoney (CNY)
CHANNEL = f"{SD}/appointment-channel"  # valueCode: the channel the booking came by
QUOTA_TAKEN = f"{SD}/appointment-quota"  # valueCode: whose quota it took (pool release)
BOOKED_BY = f"{SD}/appointment-booked-by"  # valueReference / valueString: the agent
CHECKED_IN = f"{SD}/appointment-checked-in"  # valueDateTime (签到)
QUEUE_NUMBER = f"{SD}/appointment-queue-number"  # valuePositiveInt
CALLED = f"{SD}/appointment-called"  # valueDateTime (叫号)
REMINDED = f"{SD}/appointment-reminded"  # valueDateTime: the day-before reminder went out
VISIT_TYPE = f"{CARENET_BASE}/CodeSystem/visit-type"
CHANNEL_SYSTEM = f"{CARENET_BASE}/CodeSystem/booking-channel"
CANCEL_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def ext(resource: Mapping[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension") or [] if e.get("url") == url]


def ext_value(resource: Mapping[str, Any], url: str, key: str) -> Any:
    found = ext(resource, url)
    return found[0].get(key) if found else None


def set_ext(resource: dict[str, Any], url: str, key: str, value: Any) -> None:
    """Replace every extension ``url`` with one holding ``value`` (None: remove it)."""
    rest = [e for e in resource.get("extension") or [] if e.get("url") != url]
    if value is not None:
        rest.append({"url": url, key: value})
    if rest:
        resource["extension"] = rest
    else:
        resource.pop("extension", None)


def _sub(e: Mapping[str, Any], url: str, key: str) -> Any:
    for s in e.get("extension") or []:
        if s.get("url") == url:
            return s.get(key)
    return None


def fen_to_money(fen: int) -> dict[str, Any]:
    return {"value": float(Decimal(fen) / 100), "currency": "CNY"}


def money_to_fen(money: Mapping[str, Any] | None) -> int:
    if not money:
        return 0
    return int((Decimal(str(money.get("value", 0))) * 100).to_integral_value())


def _time(value: str | None) -> time | None:
    try:
        return time.fromisoformat(value) if value else None
    except ValueError:
        return None


# ------------------------------------------------------------------ Schedule


def session_templates(schedule: Mapping[str, Any]) -> tuple[list[SessionTemplate], list[Finding]]:
    """The session templates of a Schedule, and a finding for every one that is incomplete."""
    templates: list[SessionTemplate] = []
    findings: list[Finding] = []
    for i, e in enumerate(ext(schedule, SESSION)):
        start = _time(_sub(e, "start", "valueTime"))
        end = _time(_sub(e, "end", "valueTime"))
        weekday = _sub(e, "weekday", "valueInteger")
        minutes = _sub(e, "slotMinutes", "valuePositiveInt")
        capacity = _sub(e, "capacity", "valuePositiveInt") or 1
        if start is None or end is None or weekday is None or minutes is None:
            findings.append(
                Finding(
                    "SCHED-SESSION-INCOMPLETE",
                    "error",
                    "出诊时段须有星期、开始、结束时间和号源时长",
                    "a session needs weekday, start, end and slotMinutes",
                    f"Schedule.extension('{SESSION}')[{i}]",
                )
            )
            continue
        reserved: dict[str, int] = {}
        for r in e.get("extension") or []:
            if r.get("url") == "reserved":
                channel = _sub(r, "channel", "valueCode")
                count = _sub(r, "count", "valueUnsignedInt")
                if channel is not None and count is not None:
                    reserved[channel] = reserved.get(channel, 0) + int(count)
        templates.append(
            SessionTemplate(
                weekday=int(weekday),
                start=start,
                end=end,
                slot_minutes=int(minutes),
                capacity=int(capacity),
                reserved=reserved,
                service_type=_sub(e, "serviceType", "valueCode") or "general",
                fee_fen=money_to_fen(_sub(e, "fee", "valueMoney")),
            )
        )
    return templates, findings


def session_extension(t: SessionTemplate) -> dict[str, Any]:
    """The extension holding a session template (used by the demo and the tests)."""
    parts: list[dict[str, Any]] = [
        {"url": "weekday", "valueInteger": t.weekday},
        {"url": "start", "valueTime": t.start.strftime("%H:%M:%S")},
        {"url": "end", "valueTime": t.end.strftime("%H:%M:%S")},
        {"url": "slotMinutes", "valuePositiveInt": t.slot_minutes},
        {"url": "capacity", "valuePositiveInt": t.capacity},
    ]
    for channel, count in sorted(t.reserved.items()):
        parts.append(
            {
                "url": "reserved",
                "extension": [
                    {"url": "channel", "valueCode": channel},
                    {"url": "count", "valueUnsignedInt": count},
                ],
            }
        )
    parts.append({"url": "serviceType", "valueCode": t.service_type})
    parts.append({"url": "fee", "valueMoney": fen_to_money(t.fee_fen)})
    return {"url": SESSION, "extension": parts}


def holidays_of(schedule: Mapping[str, Any]) -> set[date]:
    out: set[date] = set()
    for e in ext(schedule, HOLIDAY):
        try:
            out.add(date.fromisoformat(e.get("valueDate", "")))
        except ValueError:
            continue
    return out


def release_policy(schedule: Mapping[str, Any], default: ReleasePolicy) -> ReleasePolicy:
    found = ext(schedule, RELEASE)
    if not found:
        return default
    e = found[0]
    days = _sub(e, "daysBefore", "valueUnsignedInt")
    at = _time(_sub(e, "time", "valueTime"))
    pool = _sub(e, "poolHoursBefore", "valueUnsignedInt")
    return ReleasePolicy(
        days_before=default.days_before if days is None else int(days),
        at=at or default.at,
        pool_hours_before=default.pool_hours_before if pool is None else int(pool),
    )


def refs_of(resource: Mapping[str, Any], element: str, rtype: str) -> list[str]:
    """The references of type ``rtype`` in a list element (Schedule.actor, ...)."""
    return [
        ref
        for r in resource.get(element) or []
        if isinstance(ref := r.get("reference"), str) and ref.startswith(f"{rtype}/")
    ]


def owner_of(resource: Mapping[str, Any]) -> str | None:
    """The Organization id that owns a resource (the server's owner tag)."""
    for t in (resource.get("meta") or {}).get("tag") or []:
        if t.get("system") == OWNER_ORGANIZATION and t.get("code"):
            return str(t["code"])
    return None


def owner_tag(org_id: str) -> dict[str, Any]:
    return {"tag": [{"system": OWNER_ORGANIZATION, "code": org_id}]}


def inherited_meta(parent: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a Slot takes from its Schedule and an Appointment from its Slot: the owner (access
    control) and where the data came from (demo, bench), so both can be found together."""
    tags = [
        t
        for t in (parent.get("meta") or {}).get("tag") or []
        if t.get("system") in (OWNER_ORGANIZATION, DATA_ORIGIN)
    ]
    return {"tag": tags} if tags else None


# ------------------------------------------------------------------ Slot


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def slot_resource(schedule: Mapping[str, Any], spec: SlotSpec) -> dict[str, Any]:
    """A new Slot for a generated SlotSpec, owned by the schedule's institution."""
    slot: dict[str, Any] = {
        "resourceType": "Slot",
        "extension": [
            *quota_extensions({c: Quota(n, 0) for c, n in spec.quotas.items()}),
            {"url": RELEASE_AT, "valueDateTime": iso(spec.release_at)},
            {"url": POOL_RELEASE_AT, "valueDateTime": iso(spec.pool_release_at)},
            {"url": FEE, "valueMoney": fen_to_money(spec.fee_fen)},
        ],
        "serviceType": [{"coding": [{"system": VISIT_TYPE, "code": spec.service_type}]}],
        "schedule": {"reference": f"Schedule/{schedule['id']}"},
        "status": "free",
        "start": iso(spec.start),
        "end": iso(spec.end),
    }
    meta = inherited_meta(schedule)
    if meta:
        slot["meta"] = meta
    return slot


def quota_extensions(quotas: Mapping[str, Quota]) -> list[dict[str, Any]]:
    order = {c: i for i, c in enumerate(CHANNELS)}
    return [
        {
            "url": QUOTA,
            "extension": [
                {"url": "channel", "valueCode": channel},
                {"url": "capacity", "valueUnsignedInt": q.capacity},
                {"url": "booked", "valueUnsignedInt": q.booked},
            ],
        }
        for channel, q in sorted(quotas.items(), key=lambda kv: order.get(kv[0], 99))
    ]


def quotas_of(slot: Mapping[str, Any]) -> dict[str, Quota]:
    out: dict[str, Quota] = {}
    for e in ext(slot, QUOTA):
        channel = _sub(e, "channel", "valueCode")
        if channel:
            out[channel] = Quota(
                int(_sub(e, "capacity", "valueUnsignedInt") or 0),
                int(_sub(e, "booked", "valueUnsignedInt") or 0),
            )
    if not out:
        # A Slot written by another system without quotas: one place, open to every channel.
        out = {"online": Quota(1, 1 if slot.get("status") == "busy" else 0)}
    return out


def with_quotas(
    slot: Mapping[str, Any], quotas: Mapping[str, Quota], status: str
) -> dict[str, Any]:
    """A copy of the Slot with new quota counts and status (meta left for the repository)."""
    out = {k: v for k, v in slot.items() if k != "meta"}
    if (slot.get("meta") or {}).get("tag"):
        out["meta"] = {"tag": slot["meta"]["tag"]}
    out["extension"] = [
        e for e in slot.get("extension") or [] if e.get("url") != QUOTA
    ] + quota_extensions(quotas)
    out["status"] = status
    return out


def parse_dt(value: str | None, tz: tzinfo) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def slot_view(slot: Mapping[str, Any], tz: tzinfo) -> SlotView:
    start = parse_dt(slot.get("start"), tz)
    end = parse_dt(slot.get("end"), tz)
    assert start is not None and end is not None  # Slot.start and Slot.end are 1..1
    return SlotView(
        start=start,
        end=end,
        status=str(slot.get("status")),
        quotas=quotas_of(slot),
        release_at=parse_dt(ext_value(slot, RELEASE_AT, "valueDateTime"), tz),
        pool_release_at=parse_dt(ext_value(slot, POOL_RELEASE_AT, "valueDateTime"), tz),
    )


def service_type_code(resource: Mapping[str, Any]) -> str | None:
    for st in resource.get("serviceType") or []:
        for c in st.get("coding") or []:
            if c.get("system") == VISIT_TYPE:
                return str(c.get("code"))
    return None


# ------------------------------------------------------------------ Appointment


def participants(appointment: Mapping[str, Any], rtype: str) -> list[str]:
    return [
        ref
        for p in appointment.get("participant") or []
        if isinstance(ref := (p.get("actor") or {}).get("reference"), str)
        and ref.startswith(f"{rtype}/")
    ]


def patient_of(appointment: Mapping[str, Any]) -> str | None:
    refs = participants(appointment, "Patient")
    return refs[0].split("/", 1)[1] if refs else None


def slot_id_of(appointment: Mapping[str, Any]) -> str | None:
    for s in appointment.get("slot") or []:
        ref = s.get("reference") or ""
        if ref.startswith("Slot/"):
            return str(ref.split("/", 1)[1])
    return None


def new_appointment(
    *,
    slot: Mapping[str, Any],
    patient_id: str,
    actors: Iterable[str],
    channel: str,
    quota: str,
    booked_by: str,
    created: str,
) -> dict[str, Any]:
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "extension": [
            {"url": CHANNEL, "valueCode": channel},
            {"url": QUOTA_TAKEN, "valueCode": quota},
            {"url": BOOKED_BY, "valueString": booked_by},
        ],
        "status": "booked",
        "serviceType": slot.get("serviceType") or [],
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "created": created,
        "participant": [
            {
                "actor": {"reference": f"Patient/{patient_id}"},
                "required": "required",
                "status": "accepted",
            },
            *(
                {"actor": {"reference": ref}, "required": "required", "status": "accepted"}
                for ref in actors
            ),
        ],
    }
    if not appt["serviceType"]:
        del appt["serviceType"]
    meta = inherited_meta(slot)
    if meta:
        appt["meta"] = meta
    return appt


def with_status(appointment: Mapping[str, Any], status: str) -> dict[str, Any]:
    out = {k: v for k, v in appointment.items() if k != "meta"}
    if (appointment.get("meta") or {}).get("tag"):
        out["meta"] = {"tag": appointment["meta"]["tag"]}
    out["status"] = status
    return out


def cancellation_reason(code: str, text: str | None) -> dict[str, Any]:
    reason: dict[str, Any] = {"coding": [{"system": CANCEL_REASON, "code": code}]}
    if text:
        reason["text"] = text
    return reason
