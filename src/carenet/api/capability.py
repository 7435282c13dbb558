"""The CapabilityStatement at /fhir/metadata: states exactly what this server supports."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from carenet import FHIR_VERSION, __version__
from carenet.api.operations import capability_entries
from carenet.fhir.definitions import resource_types
from carenet.fhir.searchparams import params_for

_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
# Parameters the R4 registry defines but the search engine does not implement (see
# docs/fhir-search.md); they are left out so the statement says exactly what works.
_NOT_IMPLEMENTED = {
    "_text",
    "_content",
    "_query",
    "_filter",
    "_list",
    "_contained",
    "_containedType",
    "near",
}


@lru_cache(maxsize=4)
def _resources() -> list[dict[str, Any]]:
    out = []
    for rt in sorted(resource_types()):
        params = {c: p for c, p in params_for(rt).items() if _implemented(c, p)}
        entry: dict[str, Any] = {
            "type": rt,
            "interaction": [{"code": c} for c in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": sorted(
                {f"{rt}:{p.code}" for p in params.values() if p.type == "reference"} | {"*"}
            ),
            "searchRevInclude": ["*"],
            "searchParam": [
                {
                    "name": p.code,
                    "type": p.type,
                    **({"definition": p.url} if getattr(p, "url", None) else {}),
                }
                for p in sorted(params.values(), key=lambda p: p.code)
            ],
        }
        if rt == "AuditEvent":
            # Read-only, served from the audit chain (see docs/audit.md).
            entry.update(
                interaction=[{"code": "read"}, {"code": "search-type"}],
                versioning="no-version",
                readHistory=False,
                updateCreate=False,
                conditionalCreate=False,
                conditionalUpdate=False,
                conditionalDelete="not-supported",
                searchParam=[
                    {"name": n, "type": t}
                    for n, t in (
                        ("_id", "token"),
                        ("action", "token"),
                        ("agent", "reference"),
                        ("date", "date"),
                        ("outcome", "token"),
                        ("patient", "reference"),
                    )
                ],
            )
            del entry["searchInclude"], entry["searchRevInclude"]
        operations = capability_entries(rt)
        if operations:
            entry["operation"] = operations
        out.append(entry)
    return out


def _implemented(code: str, p: Any) -> bool:
    """A parameter the search engine answers (some R4 definitions carry no expression)."""
    if code in _NOT_IMPLEMENTED:
        return False
    return bool(p.from_resource_table or (p.expression and p.type != "special"))


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "CareNet",
        "kind": "instance",
        "software": {"name": "CareNet", "version": __version__},
        "implementation": {"description": "CareNet FHIR R4 server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Search: string (default starts-with, :exact, :contains), token (:not, :text), date "
                    "(eq ne lt gt le ge sa eb ap), reference (:Type, chaining one level), quantity, number, "
                    "uri; _id _lastUpdated _tag _profile _security; :missing; _sort _count _total "
                    "_include _revinclude (:iterate) _has _summary=count _elements. Prefer: return=minimal|"
                    "representation|OperationOutcome, handling=strict|lenient."
                ),
                "resource": _resources(),
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": "_id", "type": "token"},
                    {"name": "_lastUpdated", "type": "date"},
                    {"name": "_tag", "type": "token"},
                    {"name": "_profile", "type": "uri"},
                    {"name": "_security", "type": "token"},
                ],
            }
        ],
    }
