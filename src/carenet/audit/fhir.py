"""Rendering a stored audit event as a FHIR R4 AuditEvent (read-only: the chain is the truth).

Codes: AuditEvent.type from the audit-event-type code system (rest) or DICOM (user
authentication, export, security alert); subtype from restful-interaction or DICOM; a
break-glass access carries purposeOfEvent v3-ActReason BTG with the stated reason.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_USER_AUTH = {"system": _DCM, "code": "110114", "display": "User Authentication"}
_EXPORT = {"system": _DCM, "code": "110106", "display": "Export"}
_SECURITY_ALERT = {"system": _DCM, "code": "110113", "display": "Security Alert"}
_LOGIN = {"system": _DCM, "code": "110122", "display": "Login"}
_LOGOUT = {"system": _DCM, "code": "110123", "display": "Logout"}
_EMERGENCY_OVERRIDE = {"system": _DCM, "code": "110127", "display": "Emergency Override Started"}
_RESTFUL = "http://hl7.org/fhir/restful-interaction"
_REST_SUBTYPES = (
    "read",
    "vread",
    "history",
    "search",
    "capabilities",
    "create",
    "update",
    "patch",
    "delete",
    "operation",
    "transaction",
    "batch",
)

# our subtype -> (AuditEvent.type, AuditEvent.subtype codings)
_CODES: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {
    **{s: (_REST_TYPE, [{"system": _RESTFUL, "code": s}]) for s in _REST_SUBTYPES},
    "login": (_USER_AUTH, [_LOGIN]),
    "login-failed": (_USER_AUTH, [_LOGIN]),
    "logout": (_USER_AUTH, [_LOGOUT]),
    "export": (_EXPORT, []),
    "break-glass": (_SECURITY_ALERT, [_EMERGENCY_OVERRIDE]),
}

_OUTCOME_TEXT = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}
_BTG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "BTG",
    "display": "break the glass",
}
_WEB_SERVER = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "3",
    "display": "Web Server",
}
_ON_BEHALF_OF = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
    "code": "RESP",
    "display": "responsible party",
}
_ENTITY_PERSON = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
    "code": "1",
    "display": "Person",
}
_ENTITY_SYSTEM_OBJECT = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
    "code": "2",
    "display": "System Object",
}
_ROLE_PATIENT = {
    "system": "http://terminology.hl7.org/CodeSystem/object-role",
    "code": "1",
    "display": "Patient",
}
_ROLE_QUERY = {
    "system": "http://terminology.hl7.org/CodeSystem/object-role",
    "code": "24",
    "display": "Query",
}


def audit_event_id(chain_id: int, seq: int) -> str:
    """The AuditEvent id of an event: "<chain>-<seq>"."""
    return f"{chain_id}-{seq}"


def parse_audit_event_id(value: str) -> tuple[int, int] | None:
    chain, sep, seq = value.partition("-")
    if not sep or not chain.isdigit() or not seq.isdigit():
        return None
    return int(chain), int(seq)


def _instant(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _reference(value: str) -> dict[str, str]:
    # "anonymous" and other non-references are shown, not linked.
    if "/" in value:
        return {"reference": value}
    return {"display": value}


def to_fhir(row: Mapping[Any, Any], *, source: str) -> dict[str, Any]:
    """The AuditEvent for one audit_events row; ``source`` names this node (the observer)."""
    subtype = str(row["subtype"])
    event_type, subtypes = _CODES.get(subtype, (_REST_TYPE, []))
    outcome = int(row["outcome"])
    detail = orjson.loads(row["detail"]) if row.get("detail") else None

    agent: dict[str, Any] = {"who": _reference(str(row["agent"])), "requestor": True}
    if row.get("agent_role"):
        agent["role"] = [{"text": row["agent_role"]}]
    if row.get("source_address"):
        # network.type 2 = IP address (the only kind we record).
        agent["network"] = {"address": row["source_address"], "type": "2"}
    agents = [agent]
    if row.get("on_behalf_of"):
        agents.append(
            {
                "type": {"coding": [_ON_BEHALF_OF], "text": "on behalf of"},
                "who": _reference(str(row["on_behalf_of"])),
                "requestor": False,
            }
        )

    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": audit_event_id(int(row["chain_id"]), int(row["seq"])),
        "type": dict(event_type),
    }
    if subtypes:
        event["subtype"] = [dict(c) for c in subtypes]
    event["action"] = row["action"]
    event["recorded"] = _instant(int(row["recorded"]))
    event["outcome"] = str(outcome)
    desc = detail.get("outcomeDesc") if isinstance(detail, dict) else None
    if outcome != 0 or desc:
        event["outcomeDesc"] = str(desc or _OUTCOME_TEXT.get(outcome, str(outcome)))
    if subtype == "break-glass" or row.get("purpose"):
        purpose: dict[str, Any] = {}
        if subtype == "break-glass":
            purpose["coding"] = [dict(_BTG)]
        if row.get("purpose"):
            purpose["text"] = row["purpose"]
        event["purposeOfEvent"] = [purpose]
    event["agent"] = agents
    event["source"] = {"observer": {"display": source}, "type": [dict(_WEB_SERVER)]}

    entities: list[dict[str, Any]] = []
    patient = row.get("patient")
    if patient:
        entities.append(
            {
                "what": _reference(str(patient)),
                "type": dict(_ENTITY_PERSON),
                "role": dict(_ROLE_PATIENT),
            }
        )
    for ref in orjson.loads(row["entities"] or "[]"):
        if ref and ref != patient:
            entities.append({"what": _reference(str(ref))})
    if row.get("query"):
        entities.append(
            {
                "type": dict(_ENTITY_SYSTEM_OBJECT),
                "role": dict(_ROLE_QUERY),
                # R4 AuditEvent.entity.query is base64Binary.
                "query": base64.b64encode(str(row["query"]).encode()).decode("ascii"),
            }
        )
    if entities:
        event["entity"] = entities
    return event
