"""What each FHIR interaction tells the audit chain (ONL-8 全程留痕, ONL-10 who accessed what).

Interactions add records to the request's ``Trail`` while they run; the unit of work appends
them to the chain in the same transaction as the action, just before commit. A refused request
is recorded in a transaction of its own (the action's was rolled back).

The chain keeps text for ever and shows it to the regulator, so resident ID numbers and phone
numbers in a search query, a break-glass reason or a detail are masked before they reach it
(PRIV-1): ``identifier=urn:oid:2.16.156.10011.1.3|1101**********002X``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carenet.audit import AuditRecord
from carenet.crypto.masking import mask_query, mask_text

OUTCOME_SUCCESS = 0
OUTCOME_MINOR_FAILURE = 4
OUTCOME_SERIOUS_FAILURE = 8

# Elements that name the patient a resource is about, in the order they are tried.
_PATIENT_ELEMENTS = ("patient", "subject", "beneficiary", "individual", "for")


@dataclass(frozen=True)
class Who:
    """The agent of a request (issue 3 fills it from the login; until then 'anonymous')."""

    agent: str = "anonymous"
    role: str | None = None
    on_behalf_of: str | None = None
    source_address: str | None = None
    request_id: str | None = None


@dataclass
class Trail:
    who: Who = field(default_factory=Who)
    records: list[AuditRecord] = field(default_factory=list)
    # The request was refused and its refusal's audit event already committed (in the request's
    # own transaction, which had written nothing): the caller must not record it again.
    refusal_recorded: bool = False

    def add(
        self,
        subtype: str,
        resources: list[dict[str, Any]] | None = None,
        *,
        refs: list[str] | None = None,
        query: str | None = None,
        outcome: int = OUTCOME_SUCCESS,
        detail: dict[str, Any] | None = None,
        purpose: str | None = None,
        patient: str | None = None,
    ) -> None:
        """One record per patient concerned (so "who looked at my record" finds it), or one
        record without a patient when none is. ``patient``: the caller knows the one patient
        everything concerns (an operation on their booking), so one record names them."""
        by_patient: dict[str | None, list[str]] = {}
        for r in resources or []:
            ref = f"{r.get('resourceType')}/{r.get('id')}"
            by_patient.setdefault(patient or patient_of(r), []).append(ref)
        for ref in refs or []:
            owner = patient or (ref if ref.startswith("Patient/") else None)
            by_patient.setdefault(owner, []).append(ref)
        if not by_patient:
            by_patient[None] = []
        for concerned, entities in by_patient.items():
            self.records.append(
                AuditRecord(
                    subtype=subtype,
                    agent=self.who.agent,
                    agent_role=self.who.role,
                    on_behalf_of=self.who.on_behalf_of,
                    source_address=self.who.source_address,
                    request_id=self.who.request_id,
                    outcome=outcome,
                    patient=concerned,
                    entities=tuple(entities),
                    query=mask_query(query) if query else query,
                    detail=_masked(detail) if detail else detail,
                    purpose=mask_text(purpose) if purpose else purpose,
                )
            )


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def patient_of(resource: dict[str, Any]) -> str | None:
    """The Patient a resource is about: itself, its patient/subject/... reference, or its patient
    participant."""
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return f"Patient/{resource['id']}"
    for name in _PATIENT_ELEMENTS:
        value = resource.get(name)
        if isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str) and ref.startswith("Patient/"):
                return ref.split("/_history")[0]
    # Appointment, AppointmentResponse: the patient is one of the participants.
    for participant in resource.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        ref = actor.get("reference") if isinstance(actor, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.split("/_history")[0]
    return None
