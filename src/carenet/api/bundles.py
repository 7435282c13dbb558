"""Batch and transaction Bundles (R4 §3.1.0.11).

A transaction is all or nothing: every entry runs in the caller's one database transaction,
urn:uuid and conditional references are resolved before anything is written, and the first
refused entry aborts the whole Bundle with an OperationOutcome that names that entry. A batch
runs each entry in its own savepoint and reports each entry's outcome.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from carenet.fhir import outcomes
from carenet.fhir.definitions import is_resource_type
from carenet.fhir.outcomes import Issue, OperationOutcomeError
from carenet.store.repository import Repository

# Processing order of a transaction (R4 §3.1.0.11.2).
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def process_bundle(repo: Repository, req: Any) -> Any:
    from carenet.api.fhir_rest import FhirResponse

    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise outcomes.bad_request(
            "POST to the base URL takes a Bundle of type batch or transaction", "Bundle"
        )
    btype = bundle.get("type")
    if btype not in ("batch", "transaction"):
        raise outcomes.bad_request(
            f"Bundle.type must be batch or transaction here, not {btype!r}", "Bundle.type"
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise outcomes.bad_request(
            "Bundle.entry must be an array", "Bundle.entry", code="structure"
        )
    parsed = [_parse_entry(i, e, req.base) for i, e in enumerate(entries)]
    if btype == "transaction":
        out = _transaction(repo, req, parsed)
    else:
        out = _batch(repo, req, parsed)
    return FhirResponse(
        200,
        {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": f"{btype}-response",
            "entry": out,
        },
    )


class _Entry:
    __slots__ = (
        "index",
        "method",
        "url",
        "resource",
        "full_url",
        "if_match",
        "if_none_exist",
        "if_none_match",
        "path",
        "query",
    )

    def __init__(
        self,
        index: int,
        method: str,
        url: str,
        resource: Any,
        full_url: str | None,
        if_match: str | None,
        if_none_exist: str | None,
        if_none_match: str | None,
    ) -> None:
        self.index = index
        self.method = method
        self.url = url
        self.resource = resource
        self.full_url = full_url
        self.if_match = if_match
        self.if_none_exist = if_none_exist
        self.if_none_match = if_none_match
        self.path, _, self.query = url.partition("?")

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _parse_entry(i: int, entry: Any, base: str) -> _Entry:
    where = f"Bundle.entry[{i}]"
    if not isinstance(entry, dict):
        raise outcomes.bad_request(f"{where} must be an object", where, code="structure")
    request = entry.get("request")
    if not isinstance(request, dict):
        raise outcomes.bad_request(
            f"{where}.request is required in a batch or transaction",
            f"{where}.request",
            code="required",
        )
    method = request.get("method")
    if method not in _ORDER:
        raise outcomes.bad_request(
            f"{where}.request.method {method!r} is not one of GET HEAD POST PUT DELETE PATCH",
            f"{where}.request.method",
            code="value",
        )
    url = request.get("url")
    if not isinstance(url, str) or not url.strip():
        raise outcomes.bad_request(
            f"{where}.request.url is required", f"{where}.request.url", code="required"
        )
    url = url.strip()
    if url.startswith(base + "/"):
        url = url[len(base) + 1 :]
    elif url.startswith(("http://", "https://")):
        raise outcomes.bad_request(
            f"{where}.request.url {url!r} is not on this server", f"{where}.request.url"
        )
    url = url.lstrip("/")
    resource = entry.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise outcomes.bad_request(
            f"{where}.resource is required for {method}", f"{where}.resource", code="required"
        )
    if method == "PATCH":
        resource = _patch_body(resource, where)
    full_url = entry.get("fullUrl")
    return _Entry(
        i,
        method,
        url,
        resource,
        full_url if isinstance(full_url, str) else None,
        request.get("ifMatch"),
        request.get("ifNoneExist"),
        request.get("ifNoneMatch"),
    )


def _patch_body(resource: Any, where: str) -> Any:
    """PATCH entries carry a Binary holding the JSON Patch document (R4 §3.1.0.11.3)."""
    import base64

    import orjson

    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return orjson.loads(base64.b64decode(resource.get("data", ""), validate=True))
        except Exception as exc:  # noqa: BLE001 - any decoding problem is the client's
            raise outcomes.bad_request(
                f"{where}.resource is not a base64 JSON Patch document", f"{where}.resource"
            ) from exc
    if isinstance(resource, list):
        return resource
    raise outcomes.bad_request(
        f"{where}.resource of a PATCH must be a Binary holding a JSON Patch document",
        f"{where}.resource",
    )


def _request_for(e: _Entry, base: str, prefer: Any, body: Any, principal: Any = None) -> Any:
    from carenet.api.fhir_rest import FhirRequest

    r = FhirRequest.from_url(
        e.method,
        e.url,
        body=body,
        if_match=e.if_match,
        if_none_exist=e.if_none_exist,
        if_none_match=e.if_none_match,
        prefer=prefer,
        base=base,
        content_type="application/json-patch+json" if e.method == "PATCH" else None,
        principal=principal,
    )
    return r


def _response_entry(resp: Any) -> dict[str, Any]:
    status_text = {
        200: "200 OK",
        201: "201 Created",
        204: "204 No Content",
        304: "304 Not Modified",
    }.get(resp.status, str(resp.status))
    response: dict[str, Any] = {"status": status_text}
    if "Location" in resp.headers:
        response["location"] = resp.headers["Location"]
    if "ETag" in resp.headers:
        response["etag"] = resp.headers["ETag"]
    if (
        resp.body is not None
        and isinstance(resp.body, dict)
        and "meta" in resp.body
        and "lastUpdated" in resp.body.get("meta", {})
    ):
        response["lastModified"] = resp.body["meta"]["lastUpdated"]
    out: dict[str, Any] = {}
    if resp.body is not None:
        if resp.body.get("resourceType") == "OperationOutcome":
            response["outcome"] = resp.body
        else:
            out["resource"] = resp.body
    out["response"] = response
    return out


# ------------------------------------------------------------------ transaction


def _transaction(repo: Repository, req: Any, entries: list[_Entry]) -> list[dict[str, Any]]:
    from carenet.api.fhir_rest import FhirResponse, execute

    seen: dict[str, int] = {}
    for e in entries:
        if e.full_url:
            if e.full_url in seen:
                raise outcomes.bad_request(
                    f"Bundle.entry[{e.index}].fullUrl {e.full_url!r} duplicates Bundle.entry[{seen[e.full_url]}]",
                    f"{e.where}.fullUrl",
                )
            seen[e.full_url] = e.index
    # Where each fullUrl will live once written, so that references to it can be rewritten.
    mapping: dict[str, str] = {}
    assigned: dict[int, str] = {}
    # POST entries whose ifNoneExist matched: they write nothing and answer with the match.
    existing: dict[int, dict[str, Any]] = {}
    for e in entries:
        res_type = e.path.split("/")[0]
        if e.method == "POST":
            if not is_resource_type(res_type):
                raise _at(e, outcomes.not_found(f"Unknown resource type {res_type!r}"))
            new_id = str(uuid.uuid4())
            if e.if_none_exist:
                try:
                    found = repo.conditional_match(res_type, e.if_none_exist)
                except OperationOutcomeError as err:
                    raise _at(e, err) from err
                if found is not None:
                    new_id = found["id"]
                    existing[e.index] = found
            assigned[e.index] = new_id
            if e.full_url:
                mapping[e.full_url] = f"{res_type}/{new_id}"
        elif e.method == "PUT" and e.full_url and "?" not in e.url:
            mapping[e.full_url] = e.path
    cache: dict[str, str] = {}
    for e in entries:
        if isinstance(e.resource, dict):
            try:
                e.resource = _rewrite(e.resource, mapping, repo, cache, e.where + ".resource")
            except OperationOutcomeError as err:
                raise _at(e, err) from err
    results: dict[int, dict[str, Any]] = {}
    for e in sorted(entries, key=lambda x: (_ORDER[x.method], x.index)):
        if e.index in existing:
            found = existing[e.index]
            results[e.index] = _response_entry(
                FhirResponse(200, found, {"ETag": f'W/"{found["meta"]["versionId"]}"'})
            )
            continue
        r = _request_for(e, req.base, req.prefer, e.resource, req.principal)
        if e.method == "POST":
            r.assigned_id = assigned[e.index]
            r.if_none_exist = None  # checked above, under the criteria lock
        try:
            resp = execute(repo, r)
        except OperationOutcomeError as err:
            raise _at(e, err) from err
        results[e.index] = _response_entry(resp)
    return [results[i] for i in range(len(entries))]


def _at(e: _Entry, err: OperationOutcomeError) -> OperationOutcomeError:
    """Name the failing entry in every issue of an error."""
    issues = []
    for issue in err.issues:
        expr = tuple(
            x
            if x.startswith("Bundle.")
            else f"{e.where}.resource.{x.split('.', 1)[1]}"
            if "." in x and x.split(".")[0][:1].isupper()
            else f"{e.where}"
            for x in issue.expression
        ) or (e.where,)
        issues.append(
            Issue(
                issue.severity,
                issue.code,
                f"Bundle.entry[{e.index}] ({e.method} {e.url}): {issue.diagnostics}",
                expr,
                issue.details_code,
            )
        )
    return OperationOutcomeError(err.status, issues, err.headers)


def _rewrite(
    value: Any, mapping: dict[str, str], repo: Repository, cache: dict[str, str], where: str
) -> Any:
    """Replace references to fullUrls with Type/id, and resolve conditional references.

    Copies only the containers on the way to something replaced and returns unchanged parts
    themselves: most of a resource (codings, quantities, names) holds no reference, and
    rebuilding it all cost as much as validating it."""
    if isinstance(value, dict):
        out = None
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                new = _resolve_reference(v, mapping, repo, cache, where)
            elif isinstance(v, dict | list) or (isinstance(v, str) and v in mapping):
                new = _rewrite(v, mapping, repo, cache, where)
            else:
                continue
            if new is not v:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out
    if isinstance(value, list):
        items = None
        for i, v in enumerate(value):
            if isinstance(v, dict | list) or (isinstance(v, str) and v in mapping):
                new = _rewrite(v, mapping, repo, cache, where)
                if new is not v:
                    if items is None:
                        items = list(value)
                    items[i] = new
        return value if items is None else items
    if isinstance(value, str) and value in mapping:
        # uri elements (e.g. Provenance.target is a Reference, but canonical/uri fields may
        # also point at an entry's fullUrl)
        return mapping[value]
    return value


def _resolve_reference(
    ref: str, mapping: dict[str, str], repo: Repository, cache: dict[str, str], where: str
) -> str:
    if ref in mapping:
        return mapping[ref]
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        raise outcomes.bad_request(
            f"Reference {ref!r} does not match the fullUrl of any entry in the transaction",
            where,
            code="not-found",
        )
    head, sep, query = ref.partition("?")
    if sep and "/" not in head and is_resource_type(head):
        if ref in cache:
            return cache[ref]
        found = repo.find(
            head, unquote(query) if "%" in query and "=" not in query else query, limit=2
        )
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise outcomes.precondition_failed(
                f"Conditional reference {ref!r} matches {what} {head}"
            )
        cache[ref] = f"{head}/{found[0]['id']}"
        return cache[ref]
    return ref


# ------------------------------------------------------------------ batch


def _batch(repo: Repository, req: Any, entries: list[_Entry]) -> list[dict[str, Any]]:
    from carenet.api.fhir_rest import execute

    out: list[dict[str, Any]] = []
    for e in entries:
        r = _request_for(e, req.base, req.prefer, e.resource, req.principal)
        repo.flush()
        savepoint = repo.conn.begin_nested()
        try:
            resp = execute(repo, r)
            repo.flush()
            savepoint.commit()
            out.append(_response_entry(resp))
        except OperationOutcomeError as err:
            repo.discard_buffer()
            savepoint.rollback()
            out.append({"response": {"status": str(err.status), "outcome": err.to_outcome()}})
    return out
