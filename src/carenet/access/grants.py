"""Whether a grant resource really opens a patient's record to an actor now: the Consent's
provisions (permit or deny, their periods, nested exceptions), a family-doctor team's or
contract's period. Pure: resources and the time in, a decision out; actor.granted_patients
applies it to what the search index found.

PRIV-1 (RULES.md; 个人信息保护法 Art 29): health data is shared on the patient's separate
consent, so a Consent counts only as far as it says: an actor named in a ``deny`` provision, or
a provision whose period has not started or has ended, opens nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from carenet.fhir.dates import parse_interval_ms


def _in_period(period: Mapping[str, Any] | None, now_ms: int, tz: str) -> bool:
    """An absent period or bound is open; each bound is taken at its own precision (a date
    ``end`` lasts to the end of that day)."""
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    try:
        if start and now_ms < parse_interval_ms(str(start), tz)[0]:
            return False
        if end and now_ms > parse_interval_ms(str(end), tz)[1]:
            return False
    except ValueError:
        return False  # an unreadable period grants nothing
    return True


def _names(provision: Mapping[str, Any], actors: Collection[str]) -> bool:
    return any(
        (a.get("reference") or {}).get("reference") in actors
        for a in provision.get("actor") or []
        if isinstance(a, dict)
    )


def consent_permits(
    consent: Mapping[str, Any], actors: Collection[str], now_ms: int, tz: str = "Asia/Shanghai"
) -> bool:
    """Whether an active Consent permits one of ``actors`` ("Organization/x", "Practitioner/y")
    now. The base provision and each nested one apply within their periods; the most specific
    provision naming the actor decides (a nested deny inside a permit excludes; a nested permit
    inside a deny includes). A provision without a type counts as the opposite of its parent
    (R4: nested provisions are exceptions), the base one as permit."""
    if consent.get("status") != "active":
        return False
    decision: bool | None = None

    def walk(provision: Mapping[str, Any], parent_permits: bool | None) -> None:
        nonlocal decision
        if not _in_period(provision.get("period"), now_ms, tz):
            return
        kind = provision.get("type")
        if kind in ("permit", "deny"):
            permits = kind == "permit"
        else:
            permits = True if parent_permits is None else not parent_permits
        if _names(provision, actors):
            decision = permits
        for nested in provision.get("provision") or []:
            if isinstance(nested, dict):
                walk(nested, permits)

    base = consent.get("provision")
    if isinstance(base, dict):
        walk(base, None)
    return bool(decision)


_PERIODS = {"CareTeam": "period", "Contract": "applies", "ServiceRequest": "occurrencePeriod"}


def grant_applies(
    resource: Mapping[str, Any], actors: Collection[str], now_ms: int, tz: str = "Asia/Shanghai"
) -> bool:
    """Whether a grant resource found by the index (status already matched) opens the record to
    one of ``actors`` at ``now_ms``: a Consent by its provisions, the others by their period."""
    if resource.get("resourceType") == "Consent":
        return consent_permits(resource, actors, now_ms, tz)
    element = _PERIODS.get(str(resource.get("resourceType")))
    return _in_period(resource.get(element) if element else None, now_ms, tz)
