"""AuditEvent through FHIR: read and search straight from the audit chain, never written.

Nobody may create, update or delete an AuditEvent through any API (issue 3); the server alone
writes them, into the hash chain. Search supports the regulator's and the patient's questions:
by patient, agent, date, action and outcome.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from carenet import audit
from carenet.fhir import outcomes
from carenet.fhir.dates import parse_interval_ms
from carenet.store.engine import value_plans

SEARCH_PARAMS = {
    "patient",
    "agent",
    "date",
    "action",
    "outcome",
    "_count",
    "_getpagesoffset",
    "_id",
}
_OUTCOMES = {"0", "4", "8", "12"}


def read(
    conn: Any, res_id: str, source: str, *, patients: frozenset[str] | None = None
) -> dict[str, Any]:
    """One event; ``patients`` (when given) limits it to events about those patients."""
    key = audit.parse_audit_event_id(res_id)
    row = audit.read_event(conn, *key) if key else None
    if row is None or (patients is not None and row["patient"] not in patients):
        raise outcomes.not_found(f"AuditEvent/{res_id} is not known")
    return audit.to_fhir(row, source=source)


def search(
    conn: Any,
    params: list[tuple[str, str]],
    *,
    patients: frozenset[str] | None = None,
    source: str,
    base: str,
    strict: bool,
    default_count: int,
    max_count: int,
) -> dict[str, Any]:
    criteria: dict[str, Any] = {}
    issues: list[outcomes.Issue] = []
    count = default_count
    offset = 0
    ids: list[str] = []
    for name, value in params:
        if name in ("_format", "_pretty", "_total", "_summary", "_elements"):
            continue
        if name not in SEARCH_PARAMS:
            if strict:
                raise outcomes.bad_request(f"AuditEvent search has no parameter {name!r}", name)
            issues.append(
                outcomes.Issue("warning", "not-supported", f"Parameter {name!r} ignored", (name,))
            )
            continue
        try:
            if name == "_count":
                count = min(int(value), max_count)
                if count < 0:
                    raise ValueError
            elif name == "_getpagesoffset":
                offset = int(value)
                if offset < 0:
                    raise ValueError
            elif name == "_id":
                ids.append(value)
            elif name in ("patient", "agent"):
                criteria[name] = (
                    value if "/" in value else (f"Patient/{value}" if name == "patient" else value)
                )
            elif name == "action":
                if value not in ("C", "R", "U", "D", "E"):
                    raise ValueError
                criteria["action"] = value
            elif name == "outcome":
                if value not in _OUTCOMES:
                    raise ValueError
                criteria["outcome"] = int(value)
            elif name == "date":
                _date(criteria, value)
        except ValueError as exc:
            raise outcomes.bad_request(
                f"Invalid value {value!r} for AuditEvent search parameter {name!r}", name
            ) from exc
    if patients is not None:
        # A patient sees only events about the patients they act for: one at a time.
        asked = criteria.get("patient")
        if asked is None and len(patients) == 1:
            criteria["patient"] = next(iter(patients))
        elif asked not in patients:
            raise outcomes.OperationOutcomeError(
                403,
                [
                    outcomes.Issue(
                        "error",
                        "forbidden",
                        "Give the patient parameter: one of the patients you act for",
                        ("patient",),
                        "ACCESS-DENIED",
                    )
                ],
            )
    if ids:
        entries = []
        for i in ids:
            key = audit.parse_audit_event_id(i)
            row = audit.read_event(conn, *key) if key else None
            if row is not None and (patients is None or row["patient"] in patients):
                entries.append(audit.to_fhir(row, source=source))
        return _bundle(entries, len(entries), base, params, None, issues)
    with value_plans(conn):  # time ranges over the whole chain: plan with the values
        rows = audit.query(conn, limit=count, offset=offset, **criteria)
        total = audit.count(conn, **criteria)
    nxt = offset + count if offset + count < total else None
    return _bundle(
        [audit.to_fhir(r, source=source) for r in rows], total, base, params, nxt, issues
    )


def _date(criteria: dict[str, Any], value: str) -> None:
    prefix = value[:2] if value[:2].isalpha() else "eq"
    low, high = parse_interval_ms(value[2:] if value[:2].isalpha() else value)
    if prefix in ("ge", "sa", "gt"):
        criteria["since_ms"] = max(
            criteria.get("since_ms", low), high + 1 if prefix in ("gt", "sa") else low
        )
    elif prefix in ("le", "lt", "eb"):
        criteria["until_ms"] = min(
            criteria.get("until_ms", high + 1), low if prefix in ("lt", "eb") else high + 1
        )
    elif prefix == "eq":
        criteria["since_ms"], criteria["until_ms"] = low, high + 1
    else:
        raise ValueError(f"prefix {prefix} not supported for AuditEvent date")


def _bundle(
    entries: list[dict[str, Any]],
    total: int,
    base: str,
    params: list[tuple[str, str]],
    nxt: int | None,
    issues: list[outcomes.Issue],
) -> dict[str, Any]:
    self_q = urlencode(params)
    links = [{"relation": "self", "url": f"{base}/AuditEvent?{self_q}"}]
    if nxt is not None:
        q = [(k, v) for k, v in params if k != "_getpagesoffset"] + [("_getpagesoffset", str(nxt))]
        links.append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(q)}"})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    out = [
        {"fullUrl": f"{base}/AuditEvent/{e['id']}", "resource": e, "search": {"mode": "match"}}
        for e in entries
    ]
    if issues:
        out.append({"resource": outcomes.outcome(issues), "search": {"mode": "outcome"}})
    if out:
        bundle["entry"] = out
    return bundle
