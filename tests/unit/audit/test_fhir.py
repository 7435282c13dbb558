"""Rendering audit rows as FHIR R4 AuditEvent resources that our validator accepts."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from carenet.audit.fhir import audit_event_id, parse_audit_event_id, to_fhir
from carenet.audit.record import DEFAULT_ACTION, AuditRecord
from carenet.fhir.validation import validate_resource

NODE = "urn:carenet:node:beijing-haidian"


def row(record: AuditRecord, chain_id: int = 2, seq: int = 17) -> dict[str, Any]:
    return {
        **record.row_values(),
        "chain_id": chain_id,
        "seq": seq,
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
    }


def errors(resource: dict[str, Any]) -> list[str]:
    return [i.diagnostics for i in validate_resource(resource) if i.severity in ("error", "fatal")]


@pytest.mark.parametrize("subtype", sorted(DEFAULT_ACTION))
def test_every_interaction_renders_as_a_valid_audit_event(subtype: str) -> None:
    r = AuditRecord(
        subtype=subtype,
        agent=f"Practitioner/{uuid.uuid4()}",
        agent_role="doctor",
        on_behalf_of=f"Patient/{uuid.uuid4()}",
        patient=f"Patient/{uuid.uuid4()}",
        entities=(f"Observation/{uuid.uuid4()}",),
        query="code=http://loinc.org|8480-6&_count=10" if subtype == "search" else None,
        source_address="203.0.113.7",
        request_id=uuid.uuid4().hex,
        purpose="急诊抢救，患者昏迷" if subtype == "break-glass" else None,
        outcome=4 if subtype == "login-failed" else 0,
    )
    event = to_fhir(row(r), source=NODE)
    assert errors(event) == []
    assert event["action"] == r.action


def test_a_search_event_says_who_what_when_from_where() -> None:
    agent = f"Practitioner/{uuid.uuid4()}"
    patient = f"Patient/{uuid.uuid4()}"
    obs = f"Observation/{uuid.uuid4()}"
    r = AuditRecord(
        subtype="search",
        agent=agent,
        agent_role="doctor",
        patient=patient,
        entities=(obs, patient),
        query="subject=Patient/1&名字=张",
        source_address="2001:db8::1",
        recorded=1_767_225_600_123,
    )
    assert to_fhir(row(r), source=NODE) == {
        "resourceType": "AuditEvent",
        "id": "2-17",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "search"}],
        "action": "E",
        "recorded": "2026-01-01T00:00:00.123Z",
        "outcome": "0",
        "agent": [
            {
                "who": {"reference": agent},
                "requestor": True,
                "role": [{"text": "doctor"}],
                "network": {"address": "2001:db8::1", "type": "2"},
            }
        ],
        "source": {
            "observer": {"display": NODE},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "3",
                    "display": "Web Server",
                }
            ],
        },
        "entity": [
            {
                "what": {"reference": patient},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            },
            {"what": {"reference": obs}},
            {
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": base64.b64encode("subject=Patient/1&名字=张".encode()).decode(),
            },
        ],
    }


def test_break_glass_carries_btg_and_the_stated_reason() -> None:
    r = AuditRecord(
        subtype="break-glass",
        agent="Practitioner/9",
        patient="Patient/1",
        purpose="急诊抢救",
    )
    event = to_fhir(row(r), source=NODE)
    assert event["purposeOfEvent"] == [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                    "code": "BTG",
                    "display": "break the glass",
                }
            ],
            "text": "急诊抢救",
        }
    ]
    assert event["type"]["code"] == "110113"
    assert event["subtype"][0]["code"] == "110127"


def test_failed_login_by_nobody_is_shown_not_linked() -> None:
    r = AuditRecord(
        subtype="login-failed",
        agent="anonymous",
        outcome=4,
        detail={"outcomeDesc": "wrong password"},
    )
    event = to_fhir(row(r), source=NODE)
    assert event["agent"][0]["who"] == {"display": "anonymous"}
    assert event["outcome"] == "4"
    assert event["outcomeDesc"] == "wrong password"
    assert "entity" not in event
    assert errors(event) == []


def test_on_behalf_of_is_a_second_agent_that_did_not_request() -> None:
    r = AuditRecord(
        subtype="read", agent="RelatedPerson/g", on_behalf_of="Patient/child", patient="Patient/c"
    )
    agents = to_fhir(row(r), source=NODE)["agent"]
    assert [a["requestor"] for a in agents] == [True, False]
    assert agents[1]["who"] == {"reference": "Patient/child"}


def test_event_ids_round_trip() -> None:
    assert audit_event_id(7, 123) == "7-123"
    assert parse_audit_event_id("7-123") == (7, 123)
    for bad in ("7", "x-1", "1-", "-1", "1-2-3", "1-x"):
        assert parse_audit_event_id(bad) is None, bad
