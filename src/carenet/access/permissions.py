"""The one table of access rules: for each role, resource category and interaction, which data
the role may reach — all of it, a patient compartment, its own institution's, or none.

Pure data and lookups; the guard (access/guard.py) applies it on every path, and the matrix
test (tests/integration/access_control/test_matrix.py) is generated from it. Rules enforced:
patients see their own compartment and what guardians are bound to (PRIV-1); staff see their
own institution's data and what patients granted them (Consent) or break-glass; regulators read
everything and write nothing clinical (ONL-8); only doctors issue prescriptions (ONL-5); nobody
deletes clinical data (retention, ONL-9 — a FHIR delete is logical but still withdraws the
record from use).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from carenet.fhir.definitions import resource_types
from carenet.fhir.searchparams import patient_compartment

Scope = Literal["all", "compartment", "organization", "none"]
Category = Literal["directory", "clinical", "reference", "audit"]

INTERACTIONS: tuple[str, ...] = (
    "read",
    "vread",
    "search",
    "history",
    "create",
    "update",
    "patch",
    "delete",
)
READS = ("read", "vread", "search", "history")
WRITES = ("create", "update", "patch")

ROLES: tuple[str, ...] = (
    "anonymous",
    "patient",
    "doctor",
    "nurse",
    "pharmacist",
    "institution_admin",
    "regional_admin",
    "regulator",
    "system",
)
STAFF_ROLES = frozenset({"doctor", "nurse", "pharmacist"})

# Who's who and where: public so that patients can find a doctor and book (分时段预约).
DIRECTORY = frozenset(
    {
        "Organization",
        "Location",
        "HealthcareService",
        "Practitioner",
        "PractitionerRole",
        "Schedule",
        "Slot",
        "Endpoint",
    }
)
# What a patient may write about themselves (home measurements, questionnaires, messages,
# consents, uploaded records); never orders or prescriptions (ONL-5).
PATIENT_WRITABLE = frozenset(
    {
        "Patient",
        "Observation",
        "QuestionnaireResponse",
        "Communication",
        "Consent",
        "DocumentReference",
        "Media",
    }
)
# ONL-5: only the attending doctor issues prescriptions.
DOCTOR_ONLY = frozenset({"MedicationRequest"})
# Pharmacists review and dispense (ONL-5): they write only these.
PHARMACIST_WRITABLE = frozenset(
    {"MedicationDispense", "DetectedIssue", "Task", "Provenance", "Communication"}
)


# Capacity lives in Slots and is taken by Appointments: only the scheduling operations
# ($book, $cancel, $reschedule, $generate, ...) write them, so that no route can overbook.
# Backend services (another node, an HIS interface) may still write them, bounded by scopes.
OPERATION_MANAGED = frozenset({"Slot", "Appointment"})

# FHIR operations: who may invoke each, and on what data (the operation checks the instance it
# acts on — the patient, the Appointment, the Schedule — against this scope). Roles missing
# from an operation's row may not invoke it.
_BOOKERS: dict[str, Scope] = {
    "patient": "compartment",
    "doctor": "organization",
    "nurse": "organization",
    "institution_admin": "organization",
    "system": "all",
}
_DESK: dict[str, Scope] = {  # the clinic desk and the doctor's room
    "doctor": "organization",
    "nurse": "organization",
    "institution_admin": "organization",
    "system": "all",
}
_PUBLISHERS: dict[str, Scope] = {
    "institution_admin": "organization",
    "regional_admin": "all",
    "system": "all",
}
OPERATIONS: dict[str, dict[str, Scope]] = {
    "Slot/$availability": {role: "all" for role in ROLES},  # the directory is public
    # A patient's record, as far as the caller may read it (audited as an export).
    "Patient/$everything": {
        "patient": "compartment",
        "doctor": "organization",
        "nurse": "organization",
        "pharmacist": "organization",
        "regulator": "all",
        "system": "all",
    },
    "Appointment/$book": _BOOKERS,
    "Appointment/$cancel": _BOOKERS,
    "Appointment/$reschedule": _BOOKERS,
    "Appointment/$checkin": _BOOKERS,
    "Appointment/$queue": {**_BOOKERS, "regulator": "all"},
    "Appointment/$noshow": _DESK,
    "PractitionerRole/$call-next": {
        "doctor": "organization",
        "nurse": "organization",
        "system": "all",
    },
    "Schedule/$generate": _PUBLISHERS,
    "Schedule/$stop-clinic": _PUBLISHERS,
}


def operation_scope(role: str, operation: str) -> Scope:
    """The data scope of an operation (``"Appointment/$book"``) for a role ('none': refused)."""
    return OPERATIONS.get(operation, {}).get(role, "none")


@lru_cache(maxsize=1)
def clinical_types() -> frozenset[str]:
    """Types that belong to a patient's record: Patient and the Patient compartment (R4)."""
    return (frozenset(patient_compartment()) | {"Patient"}) - {"AuditEvent"} - DIRECTORY


def category(resource_type: str) -> Category:
    if resource_type == "AuditEvent":
        return "audit"
    if resource_type in DIRECTORY:
        return "directory"
    if resource_type in clinical_types():
        return "clinical"
    return "reference"


def _row(reads: Scope, writes: Scope, delete: Scope = "none") -> dict[str, Scope]:
    out: dict[str, Scope] = {i: reads for i in READS}
    out.update({i: writes for i in WRITES})
    out["delete"] = delete
    return out


NONE = _row("none", "none")

RULES: dict[str, dict[Category, dict[str, Scope]]] = {
    "anonymous": {
        "directory": {**NONE, "read": "all", "vread": "all", "search": "all"},
        "clinical": NONE,
        "reference": NONE,
        "audit": NONE,
    },
    "patient": {
        "directory": _row("all", "none"),
        "reference": _row("all", "none"),
        "clinical": _row("compartment", "compartment"),
        "audit": {**NONE, "read": "compartment", "search": "compartment"},
    },
    "doctor": {
        "directory": _row("all", "none"),
        "reference": _row("all", "none"),
        "clinical": _row("organization", "organization"),
        "audit": NONE,
    },
    "nurse": {
        "directory": _row("all", "none"),
        "reference": _row("all", "none"),
        "clinical": _row("organization", "organization"),
        "audit": NONE,
    },
    "pharmacist": {
        "directory": _row("all", "none"),
        "reference": _row("all", "none"),
        "clinical": _row("organization", "organization"),
        "audit": NONE,
    },
    "institution_admin": {
        "directory": _row("all", "organization", "organization"),
        "reference": _row("all", "none"),
        "clinical": NONE,
        "audit": NONE,
    },
    "regional_admin": {
        "directory": _row("all", "all", "all"),
        "reference": _row("all", "all", "all"),
        "clinical": NONE,
        "audit": NONE,
    },
    "regulator": {
        "directory": _row("all", "none"),
        "reference": _row("all", "none"),
        "clinical": _row("all", "none"),
        "audit": {**NONE, "read": "all", "search": "all"},
    },
    # Backend services and other nodes: everything, bounded by their SMART scopes.
    "system": {
        "directory": _row("all", "all", "all"),
        "reference": _row("all", "all", "all"),
        "clinical": _row("all", "all", "all"),
        "audit": {**NONE, "read": "all", "search": "all"},
    },
}


def scope_for(role: str, resource_type: str, interaction: str) -> Scope:
    """The data a role may reach with an interaction on a resource type ('none': refused)."""
    rules = RULES.get(role)
    if rules is None or interaction not in INTERACTIONS:
        return "none"
    cat = category(resource_type)
    scope = rules[cat][interaction]
    if resource_type in OPERATION_MANAGED and interaction not in READS and role != "system":
        return "none"
    if scope != "none" and interaction in WRITES and cat == "clinical":
        if role == "patient" and resource_type not in PATIENT_WRITABLE:
            return "none"
        if resource_type in DOCTOR_ONLY and role in STAFF_ROLES and role != "doctor":
            return "none"
        if role == "pharmacist" and resource_type not in PHARMACIST_WRITABLE:
            return "none"
    return scope


def matrix() -> list[tuple[str, str, str, Scope]]:
    """Every (role, resource type, interaction, scope): what the matrix test asserts."""
    return [
        (role, rt, i, scope_for(role, rt, i))
        for role in ROLES
        for rt in sorted(resource_types())
        for i in INTERACTIONS
    ]
