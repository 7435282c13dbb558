"""The FHIR RESTful interactions, independent of HTTP framing.

One function, ``execute``, carries out any interaction (read, vread, create, update, patch,
delete, conditional variants, search, history, capabilities, batch and transaction) on a
Repository. The FastAPI routes and every Bundle entry both come through here, so an
interaction behaves the same whichever way it arrives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from carenet.access.oauth_errors import insufficient_scope
from carenet.access.oauth_tokens import Principal
from carenet.access.scopes import allows
from carenet.api.audit_trail import Trail
from carenet.fhir import outcomes
from carenet.fhir.definitions import is_resource_type
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.repository import HistoryPage, Repository, format_instant, parse_etag

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Parameters that shape the response, which the API layer applies itself; search never sees
# them (searchparams.RESULT_PARAMS is the wider set of result parameters search does handle).
DISPLAY_PARAMS = {"_format", "_pretty", "_elements", "_summary"}


@dataclass
class Prefer:
    return_: str = "representation"  # minimal | representation | OperationOutcome
    handling: str = "lenient"  # strict | lenient

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        p = cls()
        if not header:
            return p
        for part in header.split(","):
            for token in part.split(";"):
                k, _, v = token.strip().partition("=")
                v = v.strip().strip('"')
                if k.strip() == "return" and v in ("minimal", "representation", "OperationOutcome"):
                    p.return_ = v
                elif k.strip() == "handling" and v in ("strict", "lenient"):
                    p.handling = v
        return p


@dataclass
class FhirRequest:
    method: str
    path: str  # relative to the FHIR base, without leading slash, e.g. "Patient/123/_history"
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    if_match: str | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    prefer: Prefer = field(default_factory=Prefer)
    base: str = ""  # absolute FHIR base URL, for fullUrls and links
    content_type: str | None = None
    # Set by transaction processing: the id a POST entry must get, so that references to its
    # urn:uuid fullUrl can be rewritten before it is written.
    assigned_id: str | None = None
    # Where interactions record what they did for the audit chain; None inside Bundles,
    # whose processing records the Bundle as a whole.
    trail: Trail | None = None
    # The bearer token's principal (None: no token). Its SMART scopes bound every interaction,
    # Bundle entries included.
    principal: Principal | None = None
    # Headers the access layer reads: where staff act, and a break-glass reason.
    acting_organization: str | None = None
    break_glass: str | None = None
    # What operations need beyond the repository (settings, the outbox, the clock): built once
    # per app in api/app.py.
    services: Any = None

    @classmethod
    def from_url(cls, method: str, url: str, **kw: Any) -> FhirRequest:
        path, _, query = url.partition("?")
        return cls(
            method=method.upper(),
            path=path.strip("/"),
            params=parse_qsl(query, keep_blank_values=True),
            **kw,
        )


@dataclass
class FhirResponse:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def etag(resource: dict[str, Any]) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


def _resource_headers(base: str, resource: dict[str, Any]) -> dict[str, str]:
    meta = resource["meta"]
    return {
        "ETag": f'W/"{meta["versionId"]}"',
        "Last-Modified": _http_date(meta["lastUpdated"]),
        "Location": f"{base}/{resource['resourceType']}/{resource['id']}/_history/{meta['versionId']}",
    }


@lru_cache(maxsize=4096)
def _http_date(instant: str) -> str:
    # Cached: a transaction writes many resources in the same millisecond or few.
    from datetime import datetime
    from email.utils import format_datetime

    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def _check_type(res_type: str) -> None:
    if not is_resource_type(res_type):
        raise outcomes.not_found(f"Unknown resource type {res_type!r}")


def _check_id(res_id: str) -> None:
    if not ID_RE.match(res_id):
        raise outcomes.bad_request(f"{res_id!r} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})")


def _body_resource(req: FhirRequest, res_type: str) -> dict[str, Any]:
    body = req.body
    if not isinstance(body, dict):
        raise outcomes.bad_request(
            "The request body must be a FHIR resource (a JSON object)", code="structure"
        )
    rt = body.get("resourceType")
    if rt != res_type:
        raise outcomes.bad_request(
            f"resourceType {rt!r} in the body does not match {res_type!r} in the URL",
            "resourceType",
        )
    return body


def _write_response(req: FhirRequest, stored: dict[str, Any], status: int) -> FhirResponse:
    headers = _resource_headers(req.base, stored)
    if req.prefer.return_ == "minimal":
        return FhirResponse(status, None, headers)
    if req.prefer.return_ == "OperationOutcome":
        verb = "created" if status == 201 else "updated"
        return FhirResponse(
            status,
            outcomes.information(
                f"{stored['resourceType']}/{stored['id']} {verb} (version {stored['meta']['versionId']})"
            ),
            headers,
        )
    return FhirResponse(status, stored, headers)


def execute(repo: Repository, req: FhirRequest) -> FhirResponse:
    """Carry out one FHIR interaction. Raises OperationOutcomeError for anything refused."""
    if req.principal is not None:
        _check_scopes(req)
    resp = _execute(repo, req)
    if req.trail is not None:
        _record(req, resp)
    return resp


def interaction_of(m: str, path: str, body: Any) -> str | None:
    """The audit subtype of a request (None: nothing to audit, e.g. the CapabilityStatement)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        if m == "POST":
            body = body if isinstance(body, dict) else {}
            return "transaction" if body.get("type") == "transaction" else "batch"
        return "search"
    if parts[0] == "metadata":
        return None
    if any(p.startswith("$") for p in parts):
        return "operation"
    if "_history" in parts:
        return "vread" if len(parts) == 4 else "history"
    if parts[-1] == "_search":
        return "search"
    if len(parts) == 1:
        return {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(
            m, "search"
        )
    return {"GET": "read", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}.get(
        m, "operation"
    )


def _check_scopes(req: FhirRequest) -> None:
    """SMART scopes: the token must grant this interaction on this resource type (for a
    system-level search or history: on every type). Bundles are checked entry by entry."""
    assert req.principal is not None
    interaction = interaction_of(req.method, req.path, req.body)
    if interaction in (None, "transaction", "batch", "operation"):
        return  # Bundles: entry by entry; operations: by the scope letters each one needs
    head = req.path.split("/", 1)[0]
    p = req.principal
    if head and is_resource_type(head):
        types: list[str] = [head]
    else:
        from carenet.fhir.definitions import resource_types

        types = sorted(resource_types())
    for rt in types:
        if not allows(p.scopes, p.contexts, rt, interaction):
            letter = {"create": "c", "update": "u", "patch": "u", "delete": "d", "search": "s"}.get(
                interaction, "r"
            )
            raise insufficient_scope(f"{rt}.{letter}")


def _record(req: FhirRequest, resp: FhirResponse) -> None:
    assert req.trail is not None
    subtype = interaction_of(req.method, req.path, req.body)
    if subtype in (None, "operation"):
        return  # operations record what they did themselves (api/operations.py)
    body = resp.body or {}
    query = urlencode(req.params) if subtype in ("search", "history") and req.params else None
    if body.get("resourceType") == "Bundle" and subtype in (
        "search",
        "history",
        "transaction",
        "batch",
    ):
        resources = [
            e["resource"]
            for e in body.get("entry", [])
            if isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") != "OperationOutcome"
        ]
        refs = [
            e["response"]["location"].split("/_history")[0][len(req.base) + 1 :]
            for e in body.get("entry", [])
            if "resource" not in e
            and isinstance(e.get("response"), dict)
            and e["response"].get("location")
        ]
        req.trail.add(subtype, resources, refs=refs, query=query)
    elif body.get("resourceType") not in (None, "OperationOutcome"):
        req.trail.add(subtype, [body])
    else:
        parts = [p for p in req.path.split("/") if p]
        ref = "/".join(parts[:2]) if len(parts) >= 2 else None
        location = resp.headers.get("Location")
        if location:
            ref = location.split("/_history")[0][len(req.base) + 1 :]
        req.trail.add(subtype, refs=[ref] if ref else None, query=query)


def _execute(repo: Repository, req: FhirRequest) -> FhirResponse:
    parts = [p for p in req.path.split("/") if p]
    m = req.method
    if not parts:
        if m == "GET":
            return _search(repo, req, None)
        if m == "POST":
            from carenet.api.bundles import process_bundle

            return process_bundle(repo, req)
        raise outcomes.method_not_allowed(f"{m} is not allowed on the base URL")
    head = parts[0]
    if head == "metadata" and len(parts) == 1:
        if m != "GET":
            raise outcomes.method_not_allowed("metadata is read-only")
        from carenet.api.capability import capability_statement

        return FhirResponse(200, capability_statement(req.base))
    if head == "_history" and len(parts) == 1:
        if m != "GET":
            raise outcomes.method_not_allowed("history is read-only")
        return _history(repo, req, None, None)
    if head == "_search" and len(parts) == 1 and m == "POST":
        return _search(repo, req, None)
    if head.startswith("$"):
        raise outcomes.not_supported(f"Operation {req.path!r} is not supported on this server")
    if any(p.startswith("$") for p in parts):
        _check_type(head)
        from carenet.api.operations import run_operation

        return run_operation(repo, req, parts)
    if head == "OperationDefinition" and len(parts) == 2 and m == "GET":
        from carenet.api.operations import definitions

        builtin = definitions().get(parts[1])
        if builtin is not None:
            return FhirResponse(200, builtin)
    res_type = head
    _check_type(res_type)
    if res_type == "AuditEvent":
        return _audit_events(repo, req, parts)
    if len(parts) == 1:
        if m == "GET":
            return _search(repo, req, res_type)
        if m == "POST":
            return _create(repo, req, res_type)
        if m == "PUT":
            return _conditional_update(repo, req, res_type)
        if m == "DELETE":
            return _conditional_delete(repo, req, res_type)
        if m == "PATCH":
            return _conditional_patch(repo, req, res_type)
        raise outcomes.method_not_allowed(f"{m} is not allowed on {res_type}")
    if len(parts) == 2 and parts[1] == "_search":
        if m not in ("GET", "POST"):
            raise outcomes.method_not_allowed(f"{m} is not allowed on _search")
        return _search(repo, req, res_type)
    if len(parts) == 2 and parts[1] == "_history":
        if m != "GET":
            raise outcomes.method_not_allowed("history is read-only")
        return _history(repo, req, res_type, None)
    res_id = parts[1]
    _check_id(res_id)
    if len(parts) == 2:
        if m == "GET":
            resource = repo.read(res_type, res_id)
            if req.if_none_match and req.if_none_match.strip() == etag(resource):
                return FhirResponse(304, None, {"ETag": etag(resource)})
            return FhirResponse(200, resource, _read_headers(req, resource))
        if m == "PUT":
            resource = _body_resource(req, res_type)
            stored, created = repo.update(
                res_type, res_id, resource, if_match=parse_etag(req.if_match)
            )
            return _write_response(req, stored, 201 if created else 200)
        if m == "DELETE":
            repo.delete(res_type, res_id)
            return FhirResponse(204)
        if m == "PATCH":
            return _patch(repo, req, res_type, res_id)
        raise outcomes.method_not_allowed(f"{m} is not allowed on {res_type}/{res_id}")
    if parts[2] == "_history":
        if m != "GET":
            raise outcomes.method_not_allowed("history is read-only")
        if len(parts) == 3:
            return _history(repo, req, res_type, res_id)
        if len(parts) == 4:
            resource = repo.vread(res_type, res_id, parts[3])
            return FhirResponse(200, resource, _read_headers(req, resource))
    raise outcomes.not_found(f"No FHIR interaction at {req.path!r}")


def _audit_events(repo: Repository, req: FhirRequest, parts: list[str]) -> FhirResponse:
    """AuditEvents come from the audit chain and are never written through the API."""
    from carenet.api import audit_events

    if req.method not in ("GET",) and not (req.method == "POST" and parts[-1] == "_search"):
        raise outcomes.method_not_allowed(
            "AuditEvents are written only by the server, into the audit chain; they cannot be created, changed or deleted"
        )
    # The guard (when there is an actor) decides who may read which events: the regulator all,
    # a patient those about themselves ("who looked at my record"), nobody else.
    guard = getattr(repo, "actor", None) is not None
    searching = not (len(parts) == 2 and parts[1] != "_search")
    scope = repo.scope("AuditEvent", "search" if searching else "read") if guard else "all"  # type: ignore[attr-defined]
    patients: frozenset[str] | None = (
        frozenset(f"Patient/{p}" for p in repo.actor.patients) if scope == "compartment" else None  # type: ignore[attr-defined]
    )
    if not searching:
        _check_id(parts[1])
        return FhirResponse(
            200, audit_events.read(repo.conn, parts[1], repo.source, patients=patients)
        )
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != "_search"):
        raise outcomes.not_supported("AuditEvent supports read and search only")
    params = list(req.params) + (list(req.body) if isinstance(req.body, list) else [])
    bundle = audit_events.search(
        repo.conn,
        params,
        patients=patients,
        source=repo.source,
        base=req.base,
        strict=req.prefer.handling == "strict",
        default_count=repo.default_count,
        max_count=repo.max_count,
    )
    return FhirResponse(200, bundle)


def _read_headers(req: FhirRequest, resource: dict[str, Any]) -> dict[str, str]:
    h = _resource_headers(req.base, resource)
    h["Content-Location"] = h.pop("Location")
    return h


def _create(repo: Repository, req: FhirRequest, res_type: str) -> FhirResponse:
    resource = _body_resource(req, res_type)
    if req.if_none_exist:
        stored, created = repo.conditional_create(
            res_type, resource, req.if_none_exist, res_id=req.assigned_id
        )
        if not created:
            resp = _write_response(req, stored, 200)
            return resp
        return _write_response(req, stored, 201)
    stored = repo.create(res_type, resource, res_id=req.assigned_id)
    return _write_response(req, stored, 201)


def _criteria(req: FhirRequest, what: str) -> str:
    params = [(k, v) for k, v in req.params if k not in DISPLAY_PARAMS]
    if not params:
        raise outcomes.bad_request(f"Conditional {what} needs search criteria in the URL")
    return urlencode(params)


def _conditional_update(repo: Repository, req: FhirRequest, res_type: str) -> FhirResponse:
    resource = _body_resource(req, res_type)
    matches = repo.find(res_type, _criteria(req, "update"), limit=2)
    if len(matches) > 1:
        raise outcomes.precondition_failed(
            "Conditional update criteria match more than one resource"
        )
    if not matches:
        body_id = resource.get("id")
        if body_id:
            _check_id(body_id)
            stored, _ = repo.update(res_type, body_id, resource, if_match=parse_etag(req.if_match))
        else:
            stored = repo.create(res_type, resource, method="PUT")
        return _write_response(req, stored, 201)
    target = matches[0]["id"]
    if resource.get("id") not in (None, target):
        raise outcomes.bad_request(
            f"Resource id {resource.get('id')!r} does not match the resource the criteria found ({target})",
            f"{res_type}.id",
        )
    resource = {**resource, "id": target}
    stored, _ = repo.update(res_type, target, resource, if_match=parse_etag(req.if_match))
    return _write_response(req, stored, 200)


def _conditional_delete(repo: Repository, req: FhirRequest, res_type: str) -> FhirResponse:
    matches = repo.find(res_type, _criteria(req, "delete"), limit=2)
    if len(matches) > 1:
        raise outcomes.precondition_failed(
            "Conditional delete criteria match more than one resource"
        )
    if matches:
        repo.delete(res_type, matches[0]["id"])
    return FhirResponse(204)


def _patch(repo: Repository, req: FhirRequest, res_type: str, res_id: str) -> FhirResponse:
    ct = (req.content_type or "").split(";")[0].strip().lower()
    if ct and ct not in ("application/json-patch+json", "application/json"):
        raise outcomes.unsupported_media_type(
            f"PATCH supports application/json-patch+json, not {ct!r}"
        )
    stored = repo.patch(res_type, res_id, req.body, if_match=parse_etag(req.if_match))
    return _write_response(req, stored, 200)


def _conditional_patch(repo: Repository, req: FhirRequest, res_type: str) -> FhirResponse:
    matches = repo.find(res_type, _criteria(req, "patch"), limit=2)
    if len(matches) != 1:
        if not matches:
            raise outcomes.not_found("Conditional patch criteria match no resource")
        raise outcomes.precondition_failed(
            "Conditional patch criteria match more than one resource"
        )
    return _patch(repo, req, res_type, matches[0]["id"])


# ------------------------------------------------------------------ search and history


def _search(repo: Repository, req: FhirRequest, res_type: str | None) -> FhirResponse:
    params = list(req.params)
    if req.method == "POST" and isinstance(req.body, list):
        params.extend(req.body)  # form-encoded _search body, decoded by the HTTP layer
    summary = _one(params, "_summary")
    elements = _one(params, "_elements")
    search_params = [(k, v) for k, v in params if k not in DISPLAY_PARAMS]
    if summary == "count":
        search_params = [(k, v) for k, v in search_params if k not in ("_count", "_total")] + [
            ("_count", "0"),
            ("_total", "accurate"),
        ]
    result = repo.search(res_type, search_params, strict=req.prefer.handling == "strict")
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    links = dict(result.links)
    if "self" in links and not any(k == "_getpages" for k, _ in params):
        # The self link repeats the request as the client sent it (with _summary/_elements),
        # not the engine's internal rewrite of it.
        links["self"] = f"{res_type or ''}?{urlencode(params)}" if params else (res_type or "")
    bundle["link"] = [
        {"relation": rel, "url": f"{req.base}/{link}" if not link.startswith("http") else link}
        for rel, link in links.items()
    ]
    entries: list[dict[str, Any]] = []
    if summary != "count":
        for r in result.matches:
            entries.append(
                {
                    "fullUrl": f"{req.base}/{r['resourceType']}/{r['id']}",
                    "resource": shape(r, summary, elements),
                    "search": {"mode": "match"},
                }
            )
        for r in result.includes:
            entries.append(
                {
                    "fullUrl": f"{req.base}/{r['resourceType']}/{r['id']}",
                    "resource": shape(r, summary, elements),
                    "search": {"mode": "include"},
                }
            )
    issues = list(result.issues)
    if issues:
        entries.append({"resource": outcomes.outcome(issues), "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, bundle)


def _one(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    return values[-1] if values else None


SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def shape(resource: dict[str, Any], summary: str | None, elements: str | None) -> dict[str, Any]:
    """Apply _summary (data, text, false) and _elements to one resource."""
    if summary in (None, "false", "count") and not elements:
        return resource
    keep_always = {"resourceType", "id", "meta"}
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        out = {k: v for k, v in resource.items() if k in keep_always | {"text"}}
    elif elements:
        wanted = {
            e.strip().split(".")[-1] if "." in e else e.strip()
            for e in elements.split(",")
            if e.strip()
        }
        out = {k: v for k, v in resource.items() if k in keep_always or k in wanted}
    else:
        return resource
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def _history(
    repo: Repository, req: FhirRequest, res_type: str | None, res_id: str | None
) -> FhirResponse:
    from carenet.fhir.dates import parse_instant_ms

    since = _one(req.params, "_since")
    count = _one(req.params, "_count")
    offset = _one(req.params, "_getpagesoffset") or "0"
    until = _one(req.params, "_until")
    try:
        since_ms = parse_instant_ms(since) if since else None
        until_ms = int(until) if until else repo.clock()
        count_n = int(count) if count else None
        offset_n = int(offset)
    except ValueError as exc:
        raise outcomes.bad_request(f"Bad history parameter: {exc}") from exc
    if (count_n is not None and count_n < 0) or offset_n < 0:
        raise outcomes.bad_request("_count and offsets must not be negative")
    if res_id is not None:
        assert res_type is not None
        if repo.current_version(res_type, res_id) is None:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
    page = repo.history(
        res_type, res_id, since=since_ms, until=until_ms, count=count_n, offset=offset_n
    )
    return FhirResponse(
        200, history_bundle(req, page, res_type, res_id, since, until_ms, count_n, offset_n)
    )


def history_bundle(
    req: FhirRequest,
    page: HistoryPage,
    res_type: str | None,
    res_id: str | None,
    since: str | None,
    until_ms: int,
    count: int | None,
    offset: int,
) -> dict[str, Any]:
    path = "/".join(p for p in (res_type, res_id) if p)
    path = f"{path}/_history" if path else "_history"
    limit = count if count is not None else 20

    def link(off: int) -> str:
        q: list[tuple[str, str]] = []
        if since:
            q.append(("_since", since))
        q += [("_until", str(until_ms)), ("_count", str(limit)), ("_getpagesoffset", str(off))]
        return f"{req.base}/{path}?{urlencode(q)}"

    links = [{"relation": "self", "url": link(offset)}]
    if offset + limit < page.total:
        links.append({"relation": "next", "url": link(offset + limit)})
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - limit))})
    entries = []
    for e in page.entries:
        url = f"{e.res_type}/{e.res_id}"
        entry: dict[str, Any] = {"fullUrl": f"{req.base}/{url}"}
        if e.resource is not None:
            entry["resource"] = e.resource
        method = e.method
        entry["request"] = {"method": method, "url": url}
        status = (
            "201 Created"
            if e.version == 1 or method == "POST"
            else ("204 No Content" if method == "DELETE" else "200 OK")
        )
        entry["response"] = {
            "status": status,
            "etag": f'W/"{e.version}"',
            "lastModified": format_instant(e.last_updated),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle


__all__ = ["FhirRequest", "FhirResponse", "OperationOutcomeError", "Prefer", "execute", "shape"]
