"""Search-index rows of a resource: what ``rows_for`` derives is what ``search`` can find.

One row per indexed value in the ``idx_*`` table of the parameter's type; the value
normalisation here (strings, dates as UTC ms intervals, references) is shared with the search
compiler so that both sides agree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, delete

from carenet.fhir.extract import compile_expression, root_elements
from carenet.fhir.searchparams import SearchParam, params_for, resource_types
from carenet.store.schema import INDEX_TABLES

STRING_MAX = 512
URI_MAX = 1024
MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
NUMBER_LIMIT = Decimal("1e24")  # Numeric(36, 12) holds 24 integer digits
CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
ISO4217 = "urn:iso:std:iso:4217"

Rows = dict[str, list[dict[str, Any]]]
#: The blind index that replaces a sensitive Identifier's or ContactPoint's value in idx_token
#: (``ResourceProtection.index_code``); None: index the value as it is.
Blind = Callable[[dict[str, Any]], str | None]

_WS_RE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Search form of a string: case-folded, accents removed, whitespace collapsed, cut to 512.

    CJK characters are kept as they are (NFKD only folds full-width forms to ASCII)."""
    if text.isascii():
        s = text.lower()
    else:
        s = unicodedata.normalize("NFKD", text)
        s = "".join(ch for ch in s if not unicodedata.combining(ch)).casefold()
    s = _WS_RE.sub(" ", s).strip()
    return s[:STRING_MAX]


# ---------------------------------------------------------------------------------- dates

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@cache
def _zone(name: str) -> tzinfo:
    return ZoneInfo(name)


def _ms(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


@lru_cache(maxsize=65536)
def date_interval(text: str, tz: str = "Asia/Shanghai") -> tuple[int, int] | None:
    """The closed interval [low, high] in UTC ms that a FHIR date/dateTime/instant covers at its
    precision; None when the text is not such a value. Values without an offset are in ``tz``.
    Minute precision (allowed in search values) is accepted too."""
    m = _DATE_RE.match(text.strip())
    if not m:
        return None
    g = m.group
    try:
        year = int(g("y"))
        month = int(g("m") or 1)
        day = int(g("d") or 1)
        hour = int(g("H") or 0)
        minute = int(g("M") or 0)
        second = int(g("S") or 0)
        frac = g("f") or ""
        micro = int((frac + "000000")[:6]) if frac else 0
        zone: tzinfo
        if g("tz") == "Z":
            zone = UTC
        elif g("tz"):
            off = g("tz")
            hh, mm = int(off[1:3]), int(off[4:6])
            if hh > 14 or mm > 59:
                return None
            sign = -1 if off[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=hh, minutes=mm))
        else:
            zone = _zone(tz)
        if hour == 24:
            return None
        start = datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    except (ValueError, OverflowError):
        return None
    low = _ms(start)
    try:
        if g("m") is None:
            end = start.replace(year=year + 1)
        elif g("d") is None:
            end = (
                start.replace(year=year + 1, month=1)
                if month == 12
                else start.replace(month=month + 1)
            )
        elif g("H") is None:
            end = datetime.combine(start.date() + timedelta(days=1), start.timetz())
        elif g("S") is None:
            return low, low + 59_999
        elif not frac:
            return low, low + 999
        else:
            return low, low + max(1, 10 ** max(0, 3 - len(frac))) - 1
    except (ValueError, OverflowError):
        return low, MAX_MS
    return low, _ms(end) - 1


# ----------------------------------------------------------------------------- references

_REF_RE = re.compile(
    r"^(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<ver>[A-Za-z0-9\-.]{1,64}))?$"
)


def parse_reference(text: str) -> tuple[str | None, str | None, str | None, str | None] | None:
    """(target_type, target_id, target_version, url) of a reference or canonical string; None
    for contained ("#x") and empty references."""
    if not text or text.startswith("#"):
        return None
    url: str | None = None
    version: str | None = None
    s = text
    absolute = "://" in s or s.startswith("urn:")
    if absolute and "|" in s:  # canonical with version
        s, version = s.split("|", 1)
    if absolute:
        url = s[:URI_MAX]
    m = _REF_RE.match(s)
    if m and m.group("type") in resource_types() and (absolute or m.group("base") is None):
        return m.group("type"), m.group("id"), m.group("ver") or version, url
    if absolute:
        return None, None, version, url
    return None


# ------------------------------------------------------------------------------ numbers


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or abs(d) >= NUMBER_LIMIT:
        return None
    return d


# ------------------------------------------------------------------------ value → rows

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_CJK_RE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _string_values(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if type(v) is not dict:
        return []
    out: list[str] = []
    if "family" in v or "given" in v:
        for k in _NAME_PARTS:
            x = v.get(k)
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                out.extend(s for s in x if isinstance(s, str))
        if "text" not in v:
            family = v.get("family") if isinstance(v.get("family"), str) else ""
            given = [g for g in v.get("given", []) if isinstance(g, str)]
            if family and given:
                # The whole name as people type it: 王小明 (family first, no space) or
                # "John Smith".
                if _CJK_RE.search(family):
                    out.append(family + "".join(given))
                else:
                    out.append(" ".join([*given, family]))
        return out
    if any(k in v for k in ("line", "city", "district", "state", "postalCode", "country")):
        for k in _ADDRESS_PARTS:
            x = v.get(k)
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                out.extend(s for s in x if isinstance(s, str))
        return out
    for k in ("text", "value", "display"):
        x = v.get(k)
        if isinstance(x, str):
            out.append(x)
    return out


def _token_values(
    v: Any, blind: Blind | None = None
) -> list[tuple[str | None, str | None, str | None]]:
    if isinstance(v, str):
        return [(None, v[:STRING_MAX], None)]
    if isinstance(v, bool):
        return [(None, "true" if v else "false", None)]
    if isinstance(v, int | float):
        return [(None, str(v), None)]
    if type(v) is not dict:
        return []
    if "coding" in v or ("text" in v and "code" not in v and "value" not in v):
        out: list[tuple[str | None, str | None, str | None]] = []
        for c in v.get("coding") or ():
            if type(c) is dict and (c.get("code") or c.get("system")):
                d = c.get("display")
                out.append(
                    (c.get("system"), c.get("code"), normalise(d) if isinstance(d, str) else None)
                )
        t = v.get("text")
        if isinstance(t, str) and t:
            out.append((None, None, normalise(t)))
        return out
    if "code" in v or ("system" in v and "value" not in v):
        d = v.get("display")
        return [(v.get("system"), v.get("code"), normalise(d) if isinstance(d, str) else None)]
    value = v.get("value")
    if isinstance(value, str):
        system = v.get("system")
        code = blind(v) if blind is not None else None
        if code is None:
            code = value[:STRING_MAX]
        if system in CONTACT_SYSTEMS:
            return [(system, code, None)]
        typ = v.get("type")
        text = typ.get("text") if type(typ) is dict else None
        return [(system, code, normalise(text) if isinstance(text, str) else None)]
    return []


def _date_values(v: Any, tz: str) -> list[tuple[int, int]]:
    if isinstance(v, str):
        iv = date_interval(v, tz)
        return [iv] if iv else []
    if type(v) is not dict:
        return []
    out: list[tuple[int, int]] = []
    if "start" in v or "end" in v:
        s = date_interval(v["start"], tz) if isinstance(v.get("start"), str) else None
        e = date_interval(v["end"], tz) if isinstance(v.get("end"), str) else None
        if s or e:
            out.append((s[0] if s else MIN_MS, e[1] if e else MAX_MS))
        return out
    for ev in v.get("event") or ():
        if isinstance(ev, str):
            iv = date_interval(ev, tz)
            if iv:
                out.append(iv)
    rep = v.get("repeat")
    if type(rep) is dict and type(rep.get("boundsPeriod")) is dict:
        out.extend(_date_values(rep["boundsPeriod"], tz))
    return out


def _reference_values(
    v: Any,
) -> tuple[list[tuple[str | None, str | None, str | None, str | None]], list[Any]]:
    """(reference rows, identifiers for :identifier token rows)."""
    if isinstance(v, str):
        p = parse_reference(v)
        return ([p] if p else []), []
    if type(v) is not dict:
        return [], []
    refs = []
    ref = v.get("reference")
    if isinstance(ref, str):
        p = parse_reference(ref)
        if p:
            refs.append(p)
    ident = v.get("identifier")
    return refs, ([ident] if type(ident) is dict else [])


def _quantity_values(v: Any) -> list[tuple[Decimal, str | None, str | None, str | None]]:
    if type(v) is not dict:
        return []
    d = to_decimal(v.get("value"))
    if d is None:
        return []
    if "currency" in v:
        return [(d, ISO4217, v.get("currency"), v.get("currency"))]
    return [(d, v.get("system"), v.get("code"), v.get("unit"))]


def _number_values(v: Any) -> list[Decimal]:
    if type(v) is dict:
        v = v.get("value")
    d = to_decimal(v)
    return [d] if d is not None else []


# ------------------------------------------------------------------------------- plans

# (code, type, extractor, the top-level keys it reads or None if unknown, parameter)
Plan = list[
    tuple[str, str, Callable[[dict[str, Any]], list[Any]], frozenset[str] | None, SearchParam]
]


@cache
def _plan(resource_type: str) -> Plan:
    plan: Plan = []
    for code, p in sorted(params_for(resource_type).items()):
        if p.from_resource_table or not p.expression or p.type == "special":
            continue
        fn = compile_expression(p.expression, resource_type)
        plan.append((code, p.type, fn, root_elements(p.expression, resource_type), p))
    return plan


def composite_param_name(code: str, element: int, component: int) -> str:
    """Index-row param of a composite's component: one name per (element, component) so the
    search can require both components to come from the same element."""
    return f"{code}#{element}#{component}"


def _add(
    rows: Rows,
    seen: set[tuple[Any, ...]],
    ptype: str,
    base: dict[str, Any],
    values: list[Any],
    tz: str,
    blind: Blind | None = None,
) -> None:
    param = base["param"]
    key: tuple[Any, ...]
    if ptype == "string":
        out = rows["idx_string"]
        for v in values:
            for s in _string_values(v):
                if not s:
                    continue
                key = ("s", param, s)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "value": normalise(s), "exact": s[:STRING_MAX]})
    elif ptype == "token":
        out = rows["idx_token"]
        for v in values:
            for system, code, text in _token_values(v, blind):
                key = ("t", param, system, code, text)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "system": system, "code": code, "text": text})
    elif ptype == "date":
        out = rows["idx_date"]
        for v in values:
            for low, high in _date_values(v, tz):
                key = ("d", param, low, high)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "low": low, "high": high})
    elif ptype == "reference":
        out = rows["idx_reference"]
        for v in values:
            refs, idents = _reference_values(v)
            for ttype, tid, tver, url in refs:
                key = ("r", param, ttype, tid, tver, url)
                if key in seen:
                    continue
                seen.add(key)
                out.append(
                    {
                        **base,
                        "target_type": ttype,
                        "target_id": tid,
                        "target_version": tver,
                        "url": url,
                    }
                )
            if idents:
                _add(rows, seen, "token", base, idents, tz, blind)
    elif ptype == "quantity":
        out = rows["idx_quantity"]
        for v in values:
            for d, system, code, unit in _quantity_values(v):
                key = ("q", param, d, system, code, unit)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "value": d, "system": system, "code": code, "unit": unit})
    elif ptype == "number":
        out = rows["idx_number"]
        for v in values:
            for d in _number_values(v):
                key = ("n", param, d)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "value": d})
    elif ptype == "uri":
        out = rows["idx_uri"]
        for v in values:
            if isinstance(v, str) and v:
                key = ("u", param, v)
                if key in seen:
                    continue
                seen.add(key)
                out.append({**base, "value": v[:URI_MAX]})


def empty_rows() -> Rows:
    return {t.name: [] for t in INDEX_TABLES.values()}


def rows_for(
    resource: dict[str, Any], *, tz: str = "Asia/Shanghai", blind: Blind | None = None
) -> Rows:
    """Every index row of ``resource`` keyed by table name; each row has all its table's
    columns. With ``blind``, sensitive identifiers and phone numbers are indexed by their blind
    index instead of their value (no other table ever receives them: no string parameter of R4
    extracts an Identifier or a ContactPoint)."""
    rtype = resource["resourceType"]
    rid = resource["id"]
    rows = empty_rows()
    seen: set[tuple[Any, ...]] = set()
    # Most of a type's parameters read elements a given resource does not have: skipping those
    # without running their extractors halves the cost of indexing.
    keys = resource.keys()
    for code, ptype, fn, reads, p in _plan(rtype):
        if reads is not None and keys.isdisjoint(reads):
            continue
        values = fn(resource)
        if not values:
            continue
        if ptype == "composite":
            for ei, element in enumerate(values):
                if type(element) is not dict:
                    continue
                # A composite matches only when every component does, so an element lacking one
                # of them gets no rows at all.
                subs = _component_values(p, element)
                if subs is None:
                    continue
                for ci, (comp, sub) in enumerate(zip(p.components, subs, strict=True)):
                    base = {
                        "res_type": rtype,
                        "res_id": rid,
                        "param": composite_param_name(code, ei, ci),
                    }
                    _add(rows, seen, comp.type, base, sub, tz, blind)
            continue
        _add(
            rows, seen, ptype, {"res_type": rtype, "res_id": rid, "param": code}, values, tz, blind
        )
    return rows


def _component_values(p: SearchParam, element: dict[str, Any]) -> list[list[Any]] | None:
    """The values of each component of composite ``p`` on ``element``; None as soon as one
    component has none."""
    keys = element.keys()
    subs = []
    for comp in p.components:
        reads = root_elements(comp.expression, None)
        if reads is not None and keys.isdisjoint(reads):
            return None
        sub = compile_expression(comp.expression, None)(element)
        if not sub:
            return None
        subs.append(sub)
    return subs


def delete_rows(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Remove every index row of the given (res_type, res_id) pairs."""
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        # Every table in one statement and one round trip, not one DELETE per index table.
        parts, params = delete_parts_pg(keys)
        conn.exec_driver_sql("WITH " + ", ".join(parts) + " SELECT 1", tuple(params))
        return
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    for table in INDEX_TABLES.values():
        for rtype, ids in by_type.items():
            for i in range(0, len(ids), 500):
                conn.execute(
                    delete(table).where(
                        table.c.res_type == rtype, table.c.res_id.in_(ids[i : i + 500])
                    )
                )


def delete_parts_pg(keys: list[tuple[str, str]]) -> tuple[list[str], list[Any]]:
    """WITH-clause parts (``d0 AS (DELETE ...)``, ...) that remove every index row of the
    given (res_type, res_id) pairs on PostgreSQL, and their positional (%s) parameters: for a
    statement of their own, or beside the INSERTs of a flush (Repository._write_all_pg). The
    tables in the same order as the per-table path of delete_rows (one lock order for both)."""
    if len(keys) == 1:  # one update (a Slot taken at release time): plain equalities
        return [
            f"d{n} AS (DELETE FROM {table.name} WHERE res_type = %s AND res_id = %s)"
            for n, table in enumerate(INDEX_TABLES.values())
        ], [value for _ in INDEX_TABLES for value in keys[0]]
    parts = ["stale AS (SELECT t, i FROM json_to_recordset(%s::json) AS k(t text, i text))"]
    parts.extend(
        f"d{n} AS (DELETE FROM {table.name} x USING stale "
        "WHERE x.res_type = stale.t AND x.res_id = stale.i)"
        for n, table in enumerate(INDEX_TABLES.values())
    )
    return parts, [orjson.dumps([{"t": t, "i": i} for t, i in keys]).decode()]


_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@cache
def _insert_sql(table_name: str, paramstyle: str) -> tuple[str, tuple[str, ...]]:
    table = next(t for t in INDEX_TABLES.values() if t.name == table_name)
    cols = tuple(c.name for c in table.columns)
    mark = _PLACEHOLDER[paramstyle]
    sql = f"INSERT INTO {table_name} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    return sql, cols


def write_rows(conn: Connection, rows: Rows) -> None:
    """Insert index rows: one executemany per table.

    Rows go to the driver as tuples (SQLAlchemy's per-row parameter processing costs more than
    the insert itself at ingest rates); the SQL holds only placeholders.
    """
    sqlite = conn.dialect.name == "sqlite"
    style = conn.dialect.paramstyle
    for table in INDEX_TABLES.values():
        batch = rows.get(table.name)
        if not batch:
            continue
        if style not in _PLACEHOLDER:
            conn.execute(table.insert(), batch)
            continue
        sql, cols = _insert_sql(table.name, style)
        if sqlite and table.name in ("idx_number", "idx_quantity"):
            # pysqlite has no Decimal type; REAL keeps 15-16 significant digits.
            params = [tuple(float(r[c]) if c == "value" else r[c] for c in cols) for r in batch]
        else:
            params = [tuple(r[c] for c in cols) for r in batch]
        conn.exec_driver_sql(sql, params)
