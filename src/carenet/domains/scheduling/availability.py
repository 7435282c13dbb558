"""Finding a place to book (号源查询): free, released slots of a day by institution, hospital level,
department, practitioner, visit type and region (GB/T 2260), grouped by schedule.

Plain FHIR search reaches a Slot's schedule and its actor, not the institution's level or
region (three references away), so this joins them here: schedules first (narrowed by the
search index where a criterion allows), then their roles and institutions (each read once),
then one search for the day's free slots of every schedule left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from carenet.domains.scheduling import model
from carenet.domains.scheduling.rules import choose_quota
from carenet.domains.scheduling.service import SchedulingContext, search_all
from carenet.fhir.identifiers import CLINICAL_DEPARTMENT, HOSPITAL_LEVEL, OWNER_ORGANIZATION
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.regions import ADDRESS_DIVISION_EXTENSION


@dataclass(frozen=True)
class AvailabilityQuery:
    day: date
    organization: str | None = None  # Organization id
    level: str | None = None  # 医院等级 code or its grade: "3A", or "2" for every 二级
    department: str | None = None  # 诊疗科目 code (PractitionerRole.specialty)
    practitioner: str | None = None  # Practitioner id
    region: str | None = None  # GB/T 2260 code of a province, city or county
    service_type: str | None = None  # visit type: general | expert | ...
    channel: str = "online"


@dataclass
class Availability:
    """One schedule's bookable places on the day."""

    schedule: dict[str, Any]
    organization: dict[str, Any] | None
    role: dict[str, Any] | None
    slots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def free(self) -> int:
        return sum(q.free for s in self.slots for q in model.quotas_of(s).values())


def region_prefix(code: str) -> str:
    """The prefix all divisions under a GB/T 2260 code share: 330000 → 33, 330100 → 3301."""
    code = code.strip()
    if len(code) == 6 and code.isdigit():
        if code.endswith("0000"):
            return code[:2]
        if code.endswith("00"):
            return code[:4]
    return code


def _codes(resource: dict[str, Any] | None, element: str, system: str) -> set[str]:
    return {
        str(c.get("code"))
        for cc in (resource or {}).get(element) or []
        for c in cc.get("coding") or []
        if c.get("system") == system and c.get("code")
    }


def _divisions(org: dict[str, Any] | None) -> set[str]:
    return {
        str(e["valueCoding"]["code"])
        for a in (org or {}).get("address") or []
        for e in a.get("extension") or []
        if e.get("url") == ADDRESS_DIVISION_EXTENSION and (e.get("valueCoding") or {}).get("code")
    }


def find_availability(ctx: SchedulingContext, q: AvailabilityQuery) -> list[Availability]:
    """Schedules with at least one place bookable now through ``q.channel`` on ``q.day``."""
    repo = ctx.repo
    params: list[tuple[str, str]] = [("active", "true")]
    if q.organization:
        params.append(("_tag", f"{OWNER_ORGANIZATION}|{q.organization}"))
    if q.practitioner:
        roles = search_all(
            repo, "PractitionerRole", [("practitioner", f"Practitioner/{q.practitioner}")]
        )
        if not roles:
            return []
        params.append(("actor", ",".join(f"PractitionerRole/{r['id']}" for r in roles)))
    schedules = search_all(repo, "Schedule", params)  # the visit type is on each slot
    orgs: dict[str, dict[str, Any] | None] = {}
    found: dict[str, Availability] = {}
    for schedule in schedules:
        owner = model.owner_of(schedule)
        if owner is not None and owner not in orgs:
            orgs[owner] = _read(ctx, "Organization", owner)
        org = orgs.get(owner) if owner else None
        role_refs = model.refs_of(schedule, "actor", "PractitionerRole")
        role = _read(ctx, "PractitionerRole", role_refs[0].split("/", 1)[1]) if role_refs else None
        if q.level and not any(c.startswith(q.level) for c in _codes(org, "type", HOSPITAL_LEVEL)):
            continue
        if q.region and not any(d.startswith(region_prefix(q.region)) for d in _divisions(org)):
            continue
        if q.department and q.department not in _codes(role, "specialty", CLINICAL_DEPARTMENT):
            continue
        found[str(schedule["id"])] = Availability(schedule, org, role)
    if not found:
        return []
    lo = q.day.isoformat()
    hi = (q.day + timedelta(days=1)).isoformat()
    slots = search_all(
        repo,
        "Slot",
        [
            ("schedule", ",".join(f"Schedule/{i}" for i in sorted(found))),
            ("status", "free"),
            ("start", f"ge{lo}"),
            ("start", f"lt{hi}"),
            ("_sort", "start"),
        ],
    )
    for slot in slots:
        view = model.slot_view(slot, ctx.tz)
        if view.start <= ctx.now or (view.release_at is not None and ctx.now < view.release_at):
            continue
        if q.service_type and model.service_type_code(slot) != q.service_type:
            continue
        if choose_quota(view, q.channel, ctx.now) is None:
            continue
        schedule_id = (slot.get("schedule") or {}).get("reference", "").split("/", 1)[-1]
        if schedule_id in found:
            found[schedule_id].slots.append(slot)
    return [a for a in found.values() if a.slots]


def _read(ctx: SchedulingContext, rtype: str, rid: str) -> dict[str, Any] | None:
    try:
        return ctx.repo.read(rtype, rid)
    except OperationOutcomeError:  # a dangling reference hides the schedule's details only
        return None
