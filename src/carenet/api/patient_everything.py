"""``Patient/{id}/$everything``: a patient's whole record as one searchset Bundle — the export a
patient downloads of their own record, or a doctor takes to another institution.

Everything goes through the actor's repository, so a doctor gets only what they may see of the
record (their institution's data and what the patient opened to them) and types their role may
not read are left out. It is audited as an export (subtype ``export``) naming every resource
handed out (ONL-10: who accessed what).
"""

from __future__ import annotations

from typing import Any

from carenet.api.operations import Operation, OperationCall, Param
from carenet.fhir import outcomes
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.searchparams import patient_compartment

# Beyond this many resources of one type, use a bulk export instead of one Bundle.
MAX_PER_TYPE = 1000


def everything(call: OperationCall) -> dict[str, Any]:
    assert call.res_id is not None
    repo = call.repo
    patient = repo.read("Patient", call.res_id)  # 404 unless the actor may see it
    ref = f"Patient/{call.res_id}"
    found: dict[str, dict[str, Any]] = {ref: patient}
    for rtype, params in sorted(patient_compartment().items()):
        if rtype == "AuditEvent":
            continue  # the audit chain is read through AuditEvent search, by the regulator
        try:
            repo.scope(rtype, "search")
        except OperationOutcomeError:
            continue  # a type this role may not read is left out, not an error
        for param in params:
            result = repo.search(rtype, [(param, ref), ("_count", str(MAX_PER_TYPE))])
            if len(result.matches) >= MAX_PER_TYPE:
                raise outcomes.too_costly(
                    f"{ref} has more than {MAX_PER_TYPE} {rtype} resources; use a bulk export"
                )
            for r in result.matches:
                found.setdefault(f"{rtype}/{r['id']}", r)
    call.written.extend(found.values())  # what was handed out, for the export audit event
    call.patients.append(ref)
    base = call.req.base
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": [{"relation": "self", "url": f"{base}/{ref}/$everything"}],
        "entry": [
            {"fullUrl": f"{base}/{key}", "resource": r, "search": {"mode": "match"}}
            for key, r in found.items()
        ],
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "everything",
        "Patient",
        instance=True,
        affects_state=False,
        needs="r",
        title="A patient's whole record (导出病历)",
        description=(
            "Every resource of the patient's compartment the caller may see, as one searchset "
            "Bundle; audited as an export."
        ),
        parameters=(Param("return", "out", "Bundle", 1, "1", "The record"),),
        handler=everything,
        audit_subtype="export",
    ),
)
