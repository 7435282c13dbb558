"""FHIR operations ($book, $cancel, ...): the registry, their OperationDefinitions, and the one
runner that parses Parameters in, checks SMART scopes, calls the domain's handler on the
actor's repository, records the audit event and returns Parameters out.

Domains declare their operations in ``domains/<domain>/api.py`` as :class:`Operation` values;
this module collects them (the router registry of DESIGN.md). Whether the actor may run an
operation on the data it touches is decided in the access layer (``GuardedRepository.
operation_scope`` and ``can_see``), which the handlers call; routes check nothing themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from carenet.access.oauth_errors import insufficient_scope
from carenet.access.scopes import allows
from carenet.adapters.notify.outbox import Notifier
from carenet.api.fhir_rest import FhirRequest, FhirResponse
from carenet.config import Settings
from carenet.fhir import outcomes
from carenet.fhir.identifiers import CARENET_BASE
from carenet.fhir.validation import assert_valid

OPERATION_DEFINITION_BASE = f"{CARENET_BASE}/OperationDefinition"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Services:
    """What operations need besides the repository, built once per app."""

    settings: Settings
    notifier: Notifier | None = None
    clock: Callable[[], datetime] = _utc_now  # aware; tests pass a fixed one


@dataclass(frozen=True)
class Param:
    """One input or output parameter, as OperationDefinition.parameter states it."""

    name: str
    use: str  # in | out
    type: str  # FHIR type of value[x] (Reference, code, date, ...) or a resource type
    min: int = 0
    max: str = "1"
    documentation: str = ""
    parts: tuple[Param, ...] = ()  # a parameter made of parts has no type of its own

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "use": self.use, "min": self.min, "max": self.max}
        if self.documentation:
            out["documentation"] = self.documentation
        if self.parts:
            out["part"] = [p.definition() for p in self.parts]
        else:
            out["type"] = self.type
        return out


@dataclass
class OperationCall:
    """One invocation: the actor's repository, the request, the instance id (instance-level
    operations) and the input parameters by name."""

    repo: Any  # the actor's GuardedRepository
    req: FhirRequest
    res_id: str | None
    inputs: dict[str, list[Any]]
    written: list[dict[str, Any]] = field(default_factory=list)  # for the audit event
    patients: list[str] = field(default_factory=list)  # "Patient/<id>" the call concerned

    def one(self, name: str, *, required: bool = False) -> Any:
        values = self.inputs.get(name) or []
        if len(values) > 1:
            raise outcomes.bad_request(
                f"Parameter {name!r} may be given once", _param_path(name), code="structure"
            )
        if not values:
            if required:
                raise outcomes.bad_request(
                    f"Parameter {name!r} is required", _param_path(name), code="required"
                )
            return None
        return values[0]

    def reference(self, name: str, rtype: str, *, required: bool = False) -> str | None:
        """The id in a Reference (or a plain "Type/id" string from a GET) to a ``rtype``."""
        value = self.one(name, required=required)
        if value is None:
            return None
        ref = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(ref, str) or not ref.startswith(f"{rtype}/") or len(ref.split("/")) != 2:
            raise outcomes.bad_request(
                f"Parameter {name!r} must reference a {rtype} ({rtype}/<id>)", _param_path(name)
            )
        return ref.split("/", 1)[1]


Handler = Callable[[OperationCall], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    code: str  # "book" (invoked as $book)
    resource_type: str
    instance: bool  # Appointment/{id}/$cancel (True) or Appointment/$book (False)
    affects_state: bool  # POST only; otherwise GET too
    needs: str  # SMART permission letters the token must hold on the type ("cu", "r")
    title: str
    description: str
    parameters: tuple[Param, ...]
    handler: Handler
    audit_subtype: str = "operation"  # "export" for operations that hand a record out

    @property
    def key(self) -> str:
        """The name the access rules use: ``"Appointment/$book"``."""
        return f"{self.resource_type}/${self.code}"

    @property
    def id(self) -> str:
        return f"{self.resource_type}-{self.code}"

    def definition(self) -> dict[str, Any]:
        """This operation as an R4 OperationDefinition."""
        return {
            "resourceType": "OperationDefinition",
            "id": self.id,
            "url": f"{OPERATION_DEFINITION_BASE}/{self.id}",
            "name": f"{self.resource_type}{self.code.title().replace('-', '')}",
            "title": self.title,
            "status": "active",
            "kind": "operation",
            "description": self.description,
            "affectsState": self.affects_state,
            "code": self.code,
            "resource": [self.resource_type],
            "system": False,
            "type": not self.instance,
            "instance": self.instance,
            "parameter": [p.definition() for p in self.parameters],
        }


@lru_cache(maxsize=1)
def registry() -> dict[tuple[str, str], Operation]:
    """Every operation of every domain, by (resource type, code). Built once (at a server
    process's start: api/app.py), importing each domain's operations; do not change it."""
    from carenet.api.patient_everything import OPERATIONS as core
    from carenet.domains.scheduling.api import OPERATIONS as scheduling

    return {(op.resource_type, op.code): op for op in (*core, *scheduling)}


def definitions() -> dict[str, dict[str, Any]]:
    """OperationDefinitions by id (served read-only under /fhir/OperationDefinition/)."""
    return {op.id: op.definition() for op in registry().values()}


def capability_entries(resource_type: str) -> list[dict[str, Any]]:
    """CapabilityStatement.rest.resource.operation for one type."""
    return [
        {
            "name": op.code,
            "definition": f"{OPERATION_DEFINITION_BASE}/{op.id}",
            "documentation": op.description,
        }
        for (rt, _), op in sorted(registry().items())
        if rt == resource_type
    ]


def _param_path(name: str) -> str:
    return f"Parameters.parameter.where(name='{name}')"


def _inputs(op: Operation, req: FhirRequest) -> dict[str, list[Any]]:
    known = {p.name: p for p in op.parameters if p.use == "in"}
    inputs: dict[str, list[Any]] = {}
    if req.method == "GET":
        for k, v in req.params:
            if k.startswith("_"):
                continue
            if k not in known:
                raise outcomes.bad_request(f"${op.code} has no parameter {k!r}", _param_path(k))
            inputs.setdefault(k, []).append(v)
        return inputs
    body = req.body
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise outcomes.bad_request(
            f"${op.code} takes a Parameters resource in the body", code="structure"
        )
    assert_valid(body, expected_type="Parameters")
    for i, p in enumerate(body.get("parameter") or []):
        name = p.get("name")
        if name not in known:
            raise outcomes.bad_request(
                f"${op.code} has no parameter {name!r}", f"Parameters.parameter[{i}].name"
            )
        value: Any = p.get("resource")
        if value is None:
            value = next((v for k, v in p.items() if k.startswith("value")), None)
        inputs.setdefault(name, []).append(value)
    return inputs


def parameters(**values: Any) -> dict[str, Any]:
    """An output Parameters resource: a dict value with a resourceType is a resource, other
    values go into value[x] by Python type (str: valueString unless given as (type, value))."""
    out: list[dict[str, Any]] = []
    for name, value in values.items():
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict) and "resourceType" in item:
                out.append({"name": name, "resource": item})
            elif isinstance(item, tuple):
                out.append({"name": name, f"value{item[0]}": item[1]})
            elif isinstance(item, bool):
                out.append({"name": name, "valueBoolean": item})
            elif isinstance(item, int):
                out.append({"name": name, "valueInteger": item})
            else:
                out.append({"name": name, "valueString": str(item)})
    return {"resourceType": "Parameters", "parameter": out}


def run_operation(repo: Any, req: FhirRequest, parts: list[str]) -> FhirResponse:
    """Run ``[Type, $op]`` or ``[Type, id, $op]`` on the actor's GuardedRepository: the one
    path every operation takes."""
    if len(parts) == 2 and parts[1].startswith("$"):
        rtype, res_id, code = parts[0], None, parts[1][1:]
    elif len(parts) == 3 and parts[2].startswith("$"):
        rtype, res_id, code = parts[0], parts[1], parts[2][1:]
    else:
        raise outcomes.not_supported(f"Operation {req.path!r} is not supported on this server")
    op = registry().get((rtype, code))
    if op is None or op.instance != (res_id is not None):
        raise outcomes.not_supported(
            f"Operation ${code} is not supported on {'an instance of ' if res_id else ''}{rtype}"
        )
    if req.method not in ("GET", "POST") or (req.method == "GET" and op.affects_state):
        raise outcomes.method_not_allowed(
            f"${code} changes data: invoke it with POST"
            if req.method == "GET"
            else f"${code} is invoked with POST{'' if op.affects_state else ' or GET'}"
        )
    repo.operation_scope(op.key)  # the role may run it at all (401/403 before anything else)
    p = req.principal
    if p is not None and not allows(p.scopes, p.contexts, rtype, "operation", needs=op.needs):
        raise insufficient_scope(f"{rtype}.{op.needs}")
    call = OperationCall(repo, req, res_id, _inputs(op, req))
    result = op.handler(call)
    if req.trail is not None:
        refs = [f"{rtype}/{res_id}"] if res_id and not call.written else []
        patients = list(dict.fromkeys(call.patients))
        req.trail.add(
            op.audit_subtype,
            call.written,
            refs=refs + (patients if len(patients) > 1 else []),
            detail={"operation": op.key},
            patient=patients[0] if len(patients) == 1 else None,
        )
    return FhirResponse(200, result)
