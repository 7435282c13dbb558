"""Demo schedules: a week of 出诊排班 at the demo region's hospitals of level 2 and above (where
time-slot appointments are required), with slots generated and some of them already booked.

Runs after the region is loaded (``carenet demo``). For up to ``DOCTORS_PER_HOSPITAL`` doctors
of each 三级/二级 hospital it finds or creates one Schedule (stable identifier, so loading twice
creates nothing new), generates its slots for ``DAYS`` days from today and books about
``BOOKED_SHARE`` of the slots of the first ``BOOKED_DAYS`` days for the hospital's local demo
residents — all through the scheduling service, as the system, so the booking rules apply and
every booking is audited. A day that already holds a demo booking of a schedule is left alone.

The choices (which doctors, which sessions, which slots, which patients) are pure functions of
the region's data and the seed; ``load_schedule`` is the one place that writes.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from carenet.access.actor import Actor
from carenet.access.guard import GuardedRepository
from carenet.audit import AuditRecord, append_many
from carenet.config import Settings
from carenet.demo.region import DEMO_TAG, PRACTITIONER_ROLE
from carenet.domains.scheduling import model, policy, service
from carenet.domains.scheduling.rules import choose_quota
from carenet.domains.scheduling.sessions import ReleasePolicy, SessionTemplate
from carenet.fhir import identifiers as ids
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.regions import ADDRESS_DIVISION_EXTENSION
from carenet.store.repository import Repository
from carenet.store.uow import Store

#: The agent of everything the demo loader books (Appointment booked-by, the audit trail).
DEMO_AGENT = "urn:carenet:demo"
#: Identifier system of the demo Schedules; the value is the PractitionerRole's identifier.
SCHEDULE_ID = ids.SCHEDULE_ID

DOCTORS_PER_HOSPITAL = 4
DAYS = 7
BOOKED_DAYS = 3  # clinic days (days with slots), from today
BOOKED_SHARE = 0.25
#: Patients tried for one slot before the slot is left free (the rules may refuse some).
CANDIDATES_PER_SLOT = 4

EXPERT_FEE_FEN = 5000
GENERAL_FEE_FEN = 1000
#: Places per session kept for 现场挂号, the referral green channel and contracted patients.
RESERVED: Mapping[str, int] = {"onsite": 2, "referral": 1, "contract": 1}
MORNING = (time(8, 0), time(12, 0))
AFTERNOON = (time(14, 0), time(17, 0))
SATURDAY = 6
#: Doctors born on or before this day (45 or older on the region's age reference day,
#: 2026-01-01) are 主任/副主任医师 here and hold an expert clinic (专家门诊).
SENIOR_BORN_BY = date(1980, 12, 31)
VISIT_TYPES: Mapping[str, str] = {"expert": "专家门诊", "general": "普通门诊"}


# ------------------------------------------------------------------ pure choices


def hospital_grade(organization: Mapping[str, Any]) -> int | None:
    """The 医院等级 grade (3, 2, 1) of an Organization from its hospital-level type, or None
    (unrated, or no level at all)."""
    for t in organization.get("type") or []:
        for c in t.get("coding") or []:
            code = str(c.get("code") or "")
            if c.get("system") == ids.HOSPITAL_LEVEL and code[:1] in ("1", "2", "3"):
                return int(code[0])
    return None


def is_senior(practitioner: Mapping[str, Any]) -> bool:
    """Whether a Practitioner is senior enough for an expert clinic (see SENIOR_BORN_BY)."""
    born = practitioner.get("birthDate")
    try:
        return born is not None and date.fromisoformat(str(born)) <= SENIOR_BORN_BY
    except ValueError:
        return False


def catchment(division: str) -> str:
    """The GB/T 2260 prefix of the residents a hospital serves: its county, or its whole city
    for a city hospital (a code ending in 00)."""
    prefix = division
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


@dataclass(frozen=True)
class DoctorRole:
    """A doctor's PractitionerRole at a hospital of level 2 or above, as the demo plans it."""

    role_id: str
    key: str  # the role's identifier value: stable for a seed, whatever ids the server gave
    organization_id: str
    grade: int
    division: str  # GB/T 2260 code of the hospital
    practitioner_id: str
    name: str
    senior: bool
    visiting: bool = False  # 多点执业: this is the doctor's second site
    location_id: str | None = None
    specialty: tuple[dict[str, Any], ...] = ()


def mark_visiting(roles: Iterable[DoctorRole]) -> list[DoctorRole]:
    """Each doctor's home is the role at their highest-graded hospital (ties: lowest key);
    their other roles are visiting sites, which get one weekly session at a time the home
    schedule leaves free (a doctor cannot hold two clinics at once)."""
    roles = list(roles)
    home: dict[str, DoctorRole] = {}
    for r in roles:
        best = home.get(r.practitioner_id)
        if best is None or (-r.grade, r.key) < (-best.grade, best.key):
            home[r.practitioner_id] = r
    return [replace(r, visiting=home[r.practitioner_id] is not r) for r in roles]


def choose_roles(roles: Iterable[DoctorRole], per_hospital: int) -> list[DoctorRole]:
    """Up to ``per_hospital`` doctors of each hospital: visiting specialists first (so the demo
    shows 多点执业), then by identifier. Returned higher grades first, then by place and
    identifier, whatever order they came in."""
    by_org: dict[str, list[DoctorRole]] = defaultdict(list)
    for r in roles:
        by_org[r.organization_id].append(r)
    chosen: list[DoctorRole] = []
    for group in by_org.values():
        chosen += sorted(group, key=lambda r: (not r.visiting, r.key))[:per_hospital]
    return sorted(chosen, key=lambda r: (-r.grade, r.division, r.key))


def session_templates(index: int, *, senior: bool, visiting: bool) -> list[SessionTemplate]:
    """The weekly sessions of a demo doctor (``index``: their place in the demo, to spread the
    afternoons). Home site: every weekday morning 08:00-12:00 and two afternoons 14:00-17:00;
    visiting site: Saturday morning. Senior doctors hold an expert clinic (15-minute slots, one
    patient each, 50 yuan), others a general clinic (30-minute slots, two patients, 10 yuan);
    every session keeps places for on-site, referral and contracted patients."""
    kind, minutes, capacity, fee = (
        ("expert", 15, 1, EXPERT_FEE_FEN) if senior else ("general", 30, 2, GENERAL_FEE_FEN)
    )

    def session(weekday: int, span: tuple[time, time]) -> SessionTemplate:
        return SessionTemplate(
            weekday=weekday,
            start=span[0],
            end=span[1],
            slot_minutes=minutes,
            capacity=capacity,
            reserved=dict(RESERVED),
            service_type=kind,
            fee_fen=fee,
        )

    if visiting:
        return [session(SATURDAY, MORNING)]
    afternoons = {1 + index % 5, 1 + (index + 2) % 5}
    out: list[SessionTemplate] = []
    for weekday in range(1, 6):
        out.append(session(weekday, MORNING))
        if weekday in afternoons:
            out.append(session(weekday, AFTERNOON))
    return out


def schedule_resource(
    role: DoctorRole, templates: Sequence[SessionTemplate], release: ReleasePolicy
) -> dict[str, Any]:
    """The Schedule of a demo doctor at one hospital, owned by that hospital."""
    kind = templates[0].service_type if templates else "general"
    department = next((str(s.get("text")) for s in role.specialty if s.get("text")), "")
    actor: list[dict[str, Any]] = [
        {"reference": f"PractitionerRole/{role.role_id}", "display": role.name}
    ]
    if role.location_id is not None:
        actor.append({"reference": f"Location/{role.location_id}"})
    resource: dict[str, Any] = {
        "resourceType": "Schedule",
        "meta": {"tag": [*model.owner_tag(role.organization_id)["tag"], dict(DEMO_TAG)]},
        "extension": [
            *(model.session_extension(t) for t in templates),
            {
                "url": model.RELEASE,
                "extension": [
                    {"url": "daysBefore", "valueUnsignedInt": release.days_before},
                    {"url": "time", "valueTime": release.at.strftime("%H:%M:%S")},
                    {"url": "poolHoursBefore", "valueUnsignedInt": release.pool_hours_before},
                ],
            },
        ],
        "identifier": [{"system": SCHEDULE_ID, "value": role.key}],
        "active": True,
        "serviceType": [
            {
                "coding": [
                    {"system": model.VISIT_TYPE, "code": kind, "display": VISIT_TYPES[kind]}
                ],
                "text": VISIT_TYPES[kind],
            }
        ],
        "actor": actor,
        "comment": f"{department}{VISIT_TYPES[kind]}" + ("（多点执业）" if role.visiting else ""),
    }
    if role.specialty:
        resource["specialty"] = [dict(s) for s in role.specialty]
    return resource


@dataclass(frozen=True)
class DemoPatient:
    patient_id: str
    key: str  # resident ID: stable for a seed, whatever id the server gave
    division: str  # GB/T 2260 code of the home address


def local_patients(patients: Sequence[DemoPatient], division: str) -> list[DemoPatient]:
    """The residents a hospital serves (its catchment), in key order; everyone if none live
    there."""
    prefix = catchment(division)
    local = [p for p in patients if p.division.startswith(prefix)]
    return sorted(local or patients, key=lambda p: p.key)


def clinic_days(slot_days: Iterable[date], count: int) -> set[date]:
    """The first ``count`` days (from today) on which a schedule has slots: the days the demo
    books. Days, not times, so that loading again later the same day picks the same days."""
    return set(sorted(set(slot_days))[:count])


def slot_rng(seed: int, schedule_key: str, slot_start: str, service_type: str) -> random.Random:
    """The random choices about one slot: the same for the same seed, schedule and slot."""
    return random.Random(f"{seed}|{schedule_key}|{slot_start}|{service_type}")  # noqa: S311 - demo data


def booking_candidates(
    rng: random.Random, pool: Sequence[DemoPatient], share: float = BOOKED_SHARE
) -> list[DemoPatient]:
    """Who to try, in order, for a slot: nobody for about ``1 - share`` of the slots, else up
    to CANDIDATES_PER_SLOT different patients of the pool (the rules may refuse some)."""
    if not pool or rng.random() >= share:
        return []
    return rng.sample(list(pool), k=min(CANDIDATES_PER_SLOT, len(pool)))


# ------------------------------------------------------------------ reading the region


def _search(repo: Repository, rtype: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return list(repo.search(rtype, [*params, ("_count", "1000")]).matches)


def _demo(repo: Repository, rtype: str) -> list[dict[str, Any]]:
    return _search(repo, rtype, [("_tag", f"{ids.DATA_ORIGIN}|demo")])


def _ref_id(ref: Mapping[str, Any] | None, rtype: str) -> str | None:
    value = (ref or {}).get("reference")
    if isinstance(value, str) and value.startswith(f"{rtype}/"):
        return value.split("/", 1)[1]
    return None


def _division(resource: Mapping[str, Any]) -> str:
    for address in resource.get("address") or []:
        for e in address.get("extension") or []:
            if e.get("url") == ADDRESS_DIVISION_EXTENSION:
                return str((e.get("valueCoding") or {}).get("code") or "")
    return ""


def _identifier(resource: Mapping[str, Any], system: str) -> str | None:
    for i in resource.get("identifier") or []:
        if i.get("system") == system and i.get("value"):
            return str(i["value"])
    return None


def _is_doctor(role: Mapping[str, Any]) -> bool:
    return any(
        c.get("system") == PRACTITIONER_ROLE and c.get("code") == "doctor"
        for cc in role.get("code") or []
        for c in cc.get("coding") or []
    )


def find_doctor_roles(store: Store) -> list[DoctorRole]:
    """Every active doctor role of the demo region at a hospital of level 2 or above."""
    with store.unit_of_work() as uow:
        repo = uow.repo
        hospitals = {
            o["id"]: (grade, _division(o))
            for o in _demo(repo, "Organization")
            if (grade := hospital_grade(o)) is not None and grade >= 2 and o.get("active", True)
        }
        practitioners = {p["id"]: p for p in _demo(repo, "Practitioner")}
        roles: list[DoctorRole] = []
        for r in _demo(repo, "PractitionerRole"):
            org = _ref_id(r.get("organization"), "Organization")
            prac = _ref_id(r.get("practitioner"), "Practitioner")
            key = _identifier(r, ids.PRACTITIONER_ROLE_ID)
            if (
                org is None
                or prac is None
                or org not in hospitals
                or prac not in practitioners
                or key is None
                or not _is_doctor(r)
                or r.get("active") is False
            ):
                continue
            grade, division = hospitals[org]
            locations = [i for loc in r.get("location") or [] if (i := _ref_id(loc, "Location"))]
            roles.append(
                DoctorRole(
                    role_id=r["id"],
                    key=key,
                    organization_id=org,
                    grade=grade,
                    division=division,
                    practitioner_id=prac,
                    name=str((r.get("practitioner") or {}).get("display") or ""),
                    senior=is_senior(practitioners[prac]),
                    location_id=locations[0] if locations else None,
                    specialty=tuple(r.get("specialty") or ()),
                )
            )
    return mark_visiting(roles)


def find_patients(store: Store) -> list[DemoPatient]:
    """The demo region's residents (active, with a resident ID), in resident-ID order."""
    with store.unit_of_work() as uow:
        out = [
            DemoPatient(p["id"], key, _division(p))
            for p in _demo(uow.repo, "Patient")
            if (key := _identifier(p, ids.RESIDENT_ID)) is not None and p.get("active", True)
        ]
    return sorted(out, key=lambda p: p.key)


# ------------------------------------------------------------------ writing


@dataclass(frozen=True)
class ScheduleResult:
    schedule_id: str
    created: bool  # the Schedule is new
    slots: int  # slots generated now
    booked: int  # appointments booked now
    skipped: str | None = None  # why nothing was done (an inactive schedule)


def _audit(
    subtype: str,
    entities: Iterable[str],
    detail: dict[str, Any],
    patient: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        subtype=subtype,
        agent=DEMO_AGENT,
        agent_role="system",
        patient=patient,
        entities=tuple(entities),
        detail=detail,
    )


def load_schedule(
    store: Store,
    settings: Settings,
    role: DoctorRole,
    index: int,
    patients: Sequence[DemoPatient],
    *,
    seed: int,
    now: datetime,
) -> ScheduleResult:
    """One doctor's demo schedule in one transaction: find or create the Schedule, generate its
    slots for DAYS days from today, book some slots of the first BOOKED_DAYS days (unless a day
    already holds a demo booking), and audit each step."""
    tz = ZoneInfo(settings.timezone)
    now = now.astimezone(tz)
    today = now.date()
    release = policy.release_policy(settings)
    templates = session_templates(index, senior=role.senior, visiting=role.visiting)
    records: list[AuditRecord] = []
    with store.unit_of_work() as uow:
        criteria = f"identifier={quote(SCHEDULE_ID, safe=':/')}|{quote(role.key, safe='')}"
        schedule, created = uow.repo.conditional_create(
            "Schedule", schedule_resource(role, templates, release), criteria
        )
        schedule_ref = f"Schedule/{schedule['id']}"
        if created:
            records.append(_audit("create", [schedule_ref], {"operation": "demo-schedule"}))
        if schedule.get("active") is False:  # stopped by the hospital: leave it so
            return ScheduleResult(schedule["id"], created, 0, 0, "inactive")
        ctx = service.SchedulingContext(
            guard=GuardedRepository(uow.repo, Actor("system", DEMO_AGENT)),
            policy=policy.booking_policy(settings),
            release=release,
            tz=tz,
            now=now,
            notifier=None,  # demo bookings text nobody
            holidays=policy.holidays(settings),
        )
        slots = service.generate_schedule_slots(ctx, schedule["id"], today, DAYS)
        if slots:
            records.append(
                _audit(
                    "operation",
                    [schedule_ref, *(f"Slot/{s['id']}" for s in slots)],
                    {"operation": "Schedule/$generate", "start": today.isoformat(), "days": DAYS},
                )
            )
        booked = _book_some(ctx, schedule, role, patients, seed=seed, today=today, records=records)
        uow.repo.flush()
        append_many(uow.repo.conn, records, chains=settings.audit_chains)
        uow.commit()
    return ScheduleResult(schedule["id"], created, len(slots), booked)


def _book_some(
    ctx: service.SchedulingContext,
    schedule: Mapping[str, Any],
    role: DoctorRole,
    patients: Sequence[DemoPatient],
    *,
    seed: int,
    today: date,
    records: list[AuditRecord],
) -> int:
    role_ref = f"PractitionerRole/{role.role_id}"
    demo_days = {
        start.astimezone(ctx.tz).date()
        for a in service.search_all(
            ctx.repo,
            "Appointment",
            [("actor", role_ref), ("date", f"ge{today.isoformat()}")],
        )
        if model.ext_value(a, model.BOOKED_BY, "valueString") == DEMO_AGENT
        and (start := model.parse_dt(a.get("start"), ctx.tz)) is not None
    }
    slots = []
    for slot in service.search_all(
        ctx.repo,
        "Slot",
        [
            ("schedule", f"Schedule/{schedule['id']}"),
            ("start", f"ge{today.isoformat()}"),
            ("start", f"lt{(today + timedelta(days=DAYS)).isoformat()}"),
        ],
    ):
        start = model.parse_dt(slot.get("start"), ctx.tz)
        if start is not None:
            slots.append((start, slot))
    days = clinic_days((start.astimezone(ctx.tz).date() for start, _ in slots), BOOKED_DAYS)
    pool = local_patients(patients, role.division)
    booked = 0
    for start, slot in sorted(slots, key=lambda s: (s[0], str(s[1]["id"]))):
        day = start.astimezone(ctx.tz).date()
        if day not in days or day in demo_days or start <= ctx.now:
            continue
        view = model.slot_view(slot, ctx.tz)
        if view.status != "free" or choose_quota(view, "online", ctx.now) is None:
            continue  # full, closed, or its places are reserved for other channels until later
        rng = slot_rng(seed, role.key, str(slot["start"]), model.service_type_code(slot) or "")
        for patient in booking_candidates(rng, pool):
            try:
                appointment = service.book_appointment(
                    ctx, slot["id"], patient.patient_id, "online"
                )
            except OperationOutcomeError as err:
                if err.status == 409:
                    break  # the slot is full after all: no other patient will fit
                continue  # a rule refused this patient (one a day per doctor, at most five)
            records.append(
                _audit(
                    "operation",
                    [f"Slot/{slot['id']}", f"Appointment/{appointment['id']}"],
                    {"operation": "Appointment/$book", "channel": "online"},
                    patient=f"Patient/{patient.patient_id}",
                )
            )
            booked += 1
            break
    return booked
