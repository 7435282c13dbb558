"""The FHIR search compiler and executor: search parameters → one parameterised SQL query.

Each parameter becomes an IN/EXISTS subquery on its ``idx_*`` table (rows written by
``indexer.rows_for``); paged result sets are frozen in ``search_snapshots`` so that following
next/previous links is stable while data changes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.sql.elements import UnaryExpression

from carenet.fhir.outcomes import Issue, OperationOutcomeError, bad_request, gone, not_supported
from carenet.fhir.searchparams import (
    RESULT_PARAMS,
    SearchParam,
    get_param,
    params_for,
    resource_types,
)
from carenet.store import indexer
from carenet.store.schema import INDEX_TABLES, resources, search_snapshot_meta, search_snapshots

SNAPSHOT_TTL_MS = 3_600_000
SNAPSHOT_MAX = 10_000
INCLUDE_DEPTH = 3
CHAIN_DEPTH = 2
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# Accepted and left to the API layer (they shape the response, not the result set).
API_PARAMS = frozenset({"_elements", "_format", "_pretty"})
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "reference": {"identifier", "missing"},
    "composite": {"missing"},
}
_TABLES = {t.name: t for t in INDEX_TABLES.values()}
KNOWN_UNSUPPORTED_MODIFIERS = {"in", "not-in", "of-type", "below", "above", "type", "iterate"}


@dataclass
class SearchResult:
    matches: list[dict[str, Any]]
    includes: list[dict[str, Any]]
    total: int | None
    links: dict[str, str]
    issues: list[Issue] = field(default_factory=list)


@dataclass
class _Ctx:
    strict: bool
    tz: str
    now_ms: int
    sqlite: bool
    issues: list[Issue] = field(default_factory=list)

    def unknown(self, name: str, text: str, *, unsupported: bool = False) -> None:
        """An unknown or unsupported parameter: 400 when strict, else a warning and skip."""
        if self.strict:
            if unsupported:
                raise not_supported(text, name)
            raise bad_request(text, name, code="not-supported" if unsupported else "invalid")
        self.issues.append(Issue("warning", "not-supported", f"{text}; ignored", (name,)))

    def num(self, d: Decimal) -> Decimal | float:
        # pysqlite has no Decimal: bind floats there (index values are stored as REAL).
        return float(d) if self.sqlite else d


# --------------------------------------------------------------------------- value parsing


def split_escaped(value: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash, and unescape ``\\, \\| \\$ \\\\``."""
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == sep:
                cur.append(nxt)
            else:
                cur.append(ch + nxt)
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(s: str) -> str:
    return s.replace("\\,", ",").replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")


def _or_values(value: str) -> list[str]:
    return [v for v in split_escaped(value, ",") if v != ""]


def _prefix(value: str, name: str, allowed: tuple[str, ...] = DATE_PREFIXES) -> tuple[str, str]:
    if len(value) >= 2 and value[:2].isalpha() and value[:2].islower():
        if value[:2] not in allowed:
            raise bad_request(f"Invalid prefix {value[:2]!r} in {name}={value!r}", name)
        return value[:2], value[2:]
    return "eq", value


def _parse_date(value: str, name: str, tz: str) -> tuple[str, int, int]:
    prefix, rest = _prefix(value, name)
    # An unencoded '+' in a URL arrives as a space: 2020-01-01T10:00:00 08:00.
    if len(rest) > 6 and rest[-6] == " " and rest[-3] == ":":
        rest = rest[:-6] + "+" + rest[-5:]
    iv = indexer.date_interval(rest, tz)
    if iv is None:
        raise bad_request(f"Invalid date {value!r} for parameter {name}", name)
    return prefix, iv[0], iv[1]


def _parse_number(text: str, name: str) -> tuple[Decimal, Decimal]:
    """The number and half its precision: 5.4 → (5.4, 0.05)."""
    t = text.strip()
    try:
        d = Decimal(t)
    except (InvalidOperation, ValueError):
        d = Decimal("NaN")
    if not d.is_finite() or not t or t[-1] not in "0123456789.":
        raise bad_request(f"Invalid number {text!r} for parameter {name}", name)
    if abs(d) >= indexer.NUMBER_LIMIT:
        raise bad_request(f"Number {text!r} out of range for parameter {name}", name)
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    if exp < -20:
        raise bad_request(f"Number {text!r} has too many decimal places for parameter {name}", name)
    return d, Decimal(5).scaleb(exp - 1)


# ------------------------------------------------------------------------ clause builders


def _in_index(
    rtype: str | None,
    type_col: ColumnElement[Any],
    id_col: ColumnElement[Any],
    table_name: str,
    param: str,
    build: Any,
    *,
    negate: bool = False,
) -> ColumnElement[bool]:
    """id_col IN (res_ids of ``rtype`` having a row of ``param`` that satisfies ``build(t)``)."""
    t = _TABLES[table_name].alias()
    conds: list[ColumnElement[bool]] = [t.c.param == param]
    extra = build(t) if build is not None else None
    if extra is not None:
        conds.append(extra)
    if rtype is None:
        clause: ColumnElement[bool] = exists(
            select(literal(1)).where(t.c.res_type == type_col, t.c.res_id == id_col, *conds)
        )
    else:
        clause = id_col.in_(select(t.c.res_id).where(t.c.res_type == rtype, *conds))
    return not_(clause) if negate else clause


def _date_cond(
    prefix: str, lo: Any, hi: Any, plo: int, phi: int, now_ms: int
) -> ColumnElement[bool]:
    """R4 3.1.1.4.x: compare the resource's interval [lo, hi] with the parameter's [plo, phi]."""
    if prefix == "eq":
        return and_(lo >= plo, hi <= phi)
    if prefix == "ne":
        return or_(lo < plo, hi > phi)
    if prefix == "gt":
        return hi > phi
    if prefix == "lt":
        return lo < plo
    if prefix == "ge":
        return or_(hi > phi, and_(lo >= plo, hi <= phi))
    if prefix == "le":
        return or_(lo < plo, and_(lo >= plo, hi <= phi))
    if prefix == "sa":
        return lo > phi
    if prefix == "eb":
        return hi < plo
    # ap: overlap with the parameter widened by 10% of its distance from now (at least a day).
    margin = max(abs(now_ms - plo) // 10, 86_400_000)
    return and_(lo <= phi + margin, hi >= plo - margin)


def _number_cond(
    ctx: _Ctx, col: Any, prefix: str, d: Decimal, half: Decimal
) -> ColumnElement[bool]:
    n = ctx.num
    if prefix == "eq":
        return and_(col >= n(d - half), col < n(d + half))
    if prefix == "ne":
        return or_(col < n(d - half), col >= n(d + half))
    if prefix in ("gt", "sa"):
        return col > n(d)
    if prefix in ("lt", "eb"):
        return col < n(d)
    if prefix == "ge":
        return col >= n(d)
    if prefix == "le":
        return col <= n(d)
    margin = max(abs(d) / 10, half)
    return and_(col >= n(d - margin), col <= n(d + margin))


def _token_cond(t: Any, value: str) -> ColumnElement[bool]:
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return t.c.code == _unescape(parts[0])
    system, code = _unescape(parts[0]), _unescape("|".join(parts[1:]))
    if system == "" and code == "":
        return false()
    if system == "":
        return and_(t.c.system.is_(None), t.c.code == code)
    if code == "":
        return t.c.system == system
    return and_(t.c.system == system, t.c.code == code)


def _uri_above(value: str) -> list[str]:
    """Every URL of which ``value`` is at or below (cut at '/' boundaries past the host)."""
    out = [value]
    head, sep, rest = value.partition("://")
    if not sep:
        return out
    segs = rest.split("/")
    for i in range(len(segs) - 1, 0, -1):
        out.append(f"{head}://{'/'.join(segs[:i])}")
    return out


class _Compiler:
    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx

    # A clause over (type_col, id_col) meaning "this resource satisfies name=value".
    def clause(
        self,
        rtype: str | None,
        name: str,
        value: str,
        type_col: ColumnElement[Any],
        id_col: ColumnElement[Any],
        *,
        top: bool,
        depth: int = 0,
    ) -> ColumnElement[bool] | None:
        ctx = self.ctx
        if name.startswith("_has:") or name == "_has":
            return self._has(rtype, name, value, id_col, depth)
        base_name, dot, chain = name.partition(".")
        code, _, modifier = base_name.partition(":")
        if rtype is None and code not in (
            "_id",
            "_lastUpdated",
            "_tag",
            "_profile",
            "_security",
            "_source",
        ):
            ctx.unknown(name, f"Parameter {code!r} is not supported in a system-level search")
            return None
        param = get_param(rtype, code)
        if param is None:
            ctx.unknown(name, f"Unknown search parameter {code!r} for resource type {rtype}")
            return None
        if dot:
            return self._chain(rtype, param, name, modifier, chain, value, id_col, depth)
        values = _or_values(value)
        if not values:
            return None
        if modifier == "missing":
            if values[0] not in ("true", "false") or len(values) != 1:
                raise bad_request(f"Invalid value {value!r} for :missing (true or false)", name)
            return self._missing(rtype, param, type_col, id_col, values[0] == "true", name)
        if modifier and param.type == "reference" and modifier in resource_types():
            if param.targets and modifier not in param.targets:
                raise bad_request(f"Parameter {code!r} cannot refer to {modifier}", name)
        elif modifier and modifier not in MODIFIERS.get(param.type, set()):
            unsupported = modifier in KNOWN_UNSUPPORTED_MODIFIERS
            ctx.unknown(
                name,
                f"Modifier {modifier!r} is not supported on parameter {code!r}",
                unsupported=unsupported,
            )
            return None
        if param.code == "_id":
            if modifier not in ("", "not"):
                ctx.unknown(name, f"Modifier {modifier!r} is not supported on _id")
                return None
            cond = id_col.in_(values)
            return not_(cond) if modifier == "not" else cond
        if param.code == "_lastUpdated":
            return self._last_updated(rtype, values, name, id_col, top)
        if not param.expression or param.type == "special":
            ctx.unknown(name, f"Search parameter {code!r} is not supported", unsupported=True)
            return None
        builder = getattr(self, f"_{param.type}")
        result: ColumnElement[bool] | None = builder(
            rtype, param, name, modifier, values, type_col, id_col
        )
        return result

    # -- per type ---------------------------------------------------------------------------

    def _string(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        def build(t: Any) -> ColumnElement[bool]:
            conds = []
            for raw in values:
                v = _unescape(raw)
                if mod == "exact":
                    conds.append(t.c.exact == v[: indexer.STRING_MAX])
                elif mod == "contains":
                    conds.append(t.c.value.contains(indexer.normalise(v), autoescape=True))
                else:
                    conds.append(t.c.value.startswith(indexer.normalise(v), autoescape=True))
            return or_(*conds)

        return _in_index(rtype, tc, ic, "idx_string", p.code, build)

    def _token(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        def build(t: Any) -> ColumnElement[bool]:
            if mod == "text":
                conds = []
                for raw in values:
                    n = indexer.normalise(_unescape(raw))
                    conds.append(
                        or_(
                            t.c.text.startswith(n, autoescape=True),
                            t.c.text.contains(" " + n, autoescape=True),
                        )
                    )
                return or_(*conds)
            return or_(*(_token_cond(t, v) for v in values))

        return _in_index(rtype, tc, ic, "idx_token", p.code, build, negate=mod == "not")

    def _date(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        parsed = [_parse_date(v, name, self.ctx.tz) for v in values]

        def build(t: Any) -> ColumnElement[bool]:
            return or_(
                *(
                    _date_cond(pr, t.c.low, t.c.high, lo, hi, self.ctx.now_ms)
                    for pr, lo, hi in parsed
                )
            )

        return _in_index(rtype, tc, ic, "idx_date", p.code, build)

    def _number(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        parsed = []
        for v in values:
            prefix, rest = _prefix(v, name)
            parsed.append((prefix, *_parse_number(rest, name)))

        def build(t: Any) -> ColumnElement[bool]:
            return or_(*(_number_cond(self.ctx, t.c.value, pr, d, h) for pr, d, h in parsed))

        return _in_index(rtype, tc, ic, "idx_number", p.code, build)

    def _quantity_parts(
        self, value: str, name: str
    ) -> tuple[str, Decimal, Decimal, str | None, str | None]:
        parts = split_escaped(value, "|")
        if len(parts) not in (1, 3):
            raise bad_request(
                f"Invalid quantity {value!r} for parameter {name} ([prefix]number|system|code)",
                name,
            )
        prefix, rest = _prefix(parts[0], name)
        d, half = _parse_number(rest, name)
        system = _unescape(parts[1]) if len(parts) == 3 and parts[1] else None
        code = _unescape(parts[2]) if len(parts) == 3 and parts[2] else None
        return prefix, d, half, system, code

    def _quantity_cond(
        self, t: Any, q: tuple[str, Decimal, Decimal, str | None, str | None]
    ) -> ColumnElement[bool]:
        prefix, d, half, system, code = q
        conds = [_number_cond(self.ctx, t.c.value, prefix, d, half)]
        if system is not None:
            conds.append(t.c.system == system)
            if code is not None:
                conds.append(t.c.code == code)
        elif code is not None:
            conds.append(or_(t.c.code == code, t.c.unit == code))
        return and_(*conds)

    def _quantity(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        parsed = [self._quantity_parts(v, name) for v in values]
        return _in_index(
            rtype,
            tc,
            ic,
            "idx_quantity",
            p.code,
            lambda t: or_(*(self._quantity_cond(t, q) for q in parsed)),
        )

    def _uri(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        def build(t: Any) -> ColumnElement[bool]:
            conds = []
            for raw in values:
                v = _unescape(raw)
                if mod == "below":
                    conds.append(
                        or_(
                            t.c.value == v,
                            t.c.value.startswith(v.rstrip("/") + "/", autoescape=True),
                        )
                    )
                elif mod == "above":
                    conds.append(t.c.value.in_(_uri_above(v)))
                else:
                    conds.append(t.c.value == v)
            return or_(*conds)

        return _in_index(rtype, tc, ic, "idx_uri", p.code, build)

    def _reference_cond(
        self, t: Any, p: SearchParam, name: str, mod: str, raw: str
    ) -> ColumnElement[bool]:
        v = _unescape(raw)
        if "://" in v or v.startswith("urn:"):
            url, _, version = v.partition("|")
            cond = t.c.url == url
            return and_(cond, t.c.target_version == version) if version else cond
        if "/" in v:
            parsed = indexer.parse_reference(v)
            if parsed is None:
                raise bad_request(f"Invalid reference {raw!r} for parameter {name}", name)
            ttype, tid, tver, _url = parsed
            if mod and ttype != mod:
                return false()
            conds = [t.c.target_type == ttype, t.c.target_id == tid]
            if tver:
                conds.append(t.c.target_version == tver)
            return and_(*conds)
        if mod:
            return and_(t.c.target_type == mod, t.c.target_id == v)
        return t.c.target_id == v

    def _reference(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool]:
        if mod == "identifier":
            return _in_index(
                rtype,
                tc,
                ic,
                "idx_token",
                p.code,
                lambda t: or_(*(_token_cond(t, v) for v in values)),
            )
        return _in_index(
            rtype,
            tc,
            ic,
            "idx_reference",
            p.code,
            lambda t: or_(*(self._reference_cond(t, p, name, mod, v) for v in values)),
        )

    def _composite(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        mod: str,
        values: list[str],
        tc: Any,
        ic: Any,
    ) -> ColumnElement[bool] | None:
        comps = p.components
        if not comps or any(
            c.type not in ("token", "quantity", "date", "string", "number", "uri", "reference")
            for c in comps
        ):
            self.ctx.unknown(
                name, f"Composite parameter {p.code!r} is not supported", unsupported=True
            )
            return None
        alternatives = []
        for v in values:
            parts = split_escaped(v, "$")
            if len(parts) != len(comps):
                raise bad_request(
                    f"Composite parameter {name} needs {len(comps)} parts separated by '$'", name
                )
            alternatives.append(parts)
        ors = []
        for parts in alternatives:
            tables = [INDEX_TABLES[c.type].alias() for c in comps]
            first = tables[0]
            conds: list[ColumnElement[bool]] = [
                first.c.param.startswith(p.code + "#", autoescape=True),
                first.c.param.endswith("#0", autoescape=True),
                self._component_cond(first, comps[0].type, parts[0], name),
            ]
            for k in range(1, len(comps)):
                tk = tables[k]
                sibling = func.substr(
                    first.c.param, 1, func.length(first.c.param) - 1, type_=String
                ) + literal(str(k), String)
                conds.append(
                    exists(
                        select(literal(1)).where(
                            tk.c.res_type == first.c.res_type,
                            tk.c.res_id == first.c.res_id,
                            tk.c.param == sibling,
                            self._component_cond(tk, comps[k].type, parts[k], name),
                        )
                    )
                )
            if rtype is None:
                ors.append(
                    exists(
                        select(literal(1)).where(
                            first.c.res_type == tc, first.c.res_id == ic, *conds
                        )
                    )
                )
            else:
                ors.append(ic.in_(select(first.c.res_id).where(first.c.res_type == rtype, *conds)))
        return or_(*ors)

    def _component_cond(self, t: Any, ctype: str, value: str, name: str) -> ColumnElement[bool]:
        if ctype == "token":
            return _token_cond(t, value)
        if ctype == "quantity":
            return self._quantity_cond(t, self._quantity_parts(value, name))
        if ctype == "date":
            pr, lo, hi = _parse_date(value, name, self.ctx.tz)
            return _date_cond(pr, t.c.low, t.c.high, lo, hi, self.ctx.now_ms)
        if ctype == "number":
            prefix, rest = _prefix(value, name)
            d, half = _parse_number(rest, name)
            return _number_cond(self.ctx, t.c.value, prefix, d, half)
        if ctype == "string":
            return t.c.value.startswith(indexer.normalise(_unescape(value)), autoescape=True)
        if ctype == "uri":
            return t.c.value == _unescape(value)
        return t.c.target_id == _unescape(value)

    # -- special forms ----------------------------------------------------------------------

    def _missing(
        self, rtype: str | None, p: SearchParam, tc: Any, ic: Any, missing: bool, name: str
    ) -> ColumnElement[bool] | None:
        if p.from_resource_table:
            return false() if missing else true()
        if not p.expression or p.type == "special":
            self.ctx.unknown(
                name, f"Search parameter {p.code!r} is not supported", unsupported=True
            )
            return None
        if p.type == "composite":
            t = (
                INDEX_TABLES[p.components[0].type].alias()
                if p.components
                else INDEX_TABLES["token"].alias()
            )
            build_param = t.c.param.startswith(p.code + "#", autoescape=True)
            if rtype is None:
                clause: ColumnElement[bool] = exists(
                    select(literal(1)).where(t.c.res_type == tc, t.c.res_id == ic, build_param)
                )
            else:
                clause = ic.in_(select(t.c.res_id).where(t.c.res_type == rtype, build_param))
            return not_(clause) if missing else clause
        table = INDEX_TABLES[p.type].name
        if p.type == "reference":
            # A reference given only by identifier still counts as present.
            present = or_(
                _in_index(rtype, tc, ic, table, p.code, None),
                _in_index(rtype, tc, ic, "idx_token", p.code, None),
            )
            return not_(present) if missing else present
        return _in_index(rtype, tc, ic, table, p.code, None, negate=missing)

    def _last_updated(
        self, rtype: str | None, values: list[str], name: str, ic: Any, top: bool
    ) -> ColumnElement[bool]:
        parsed = [_parse_date(v, name, self.ctx.tz) for v in values]
        if top:
            col = resources.c.last_updated
            return or_(
                *(_date_cond(pr, col, col, lo, hi, self.ctx.now_ms) for pr, lo, hi in parsed)
            )
        r2 = resources.alias()
        col = r2.c.last_updated
        return ic.in_(
            select(r2.c.res_id).where(
                r2.c.res_type == rtype,
                r2.c.deleted == false(),
                or_(*(_date_cond(pr, col, col, lo, hi, self.ctx.now_ms) for pr, lo, hi in parsed)),
            )
        )

    def _chain(
        self,
        rtype: str | None,
        p: SearchParam,
        name: str,
        modifier: str,
        chain: str,
        value: str,
        ic: Any,
        depth: int,
    ) -> ColumnElement[bool] | None:
        if p.type != "reference":
            raise bad_request(
                f"Parameter {p.code!r} is not a reference and cannot be chained", name
            )
        if depth >= CHAIN_DEPTH:
            raise not_supported(f"Chains deeper than {CHAIN_DEPTH} are not supported", name)
        if modifier:
            if modifier not in resource_types():
                raise bad_request(f"Invalid chain type {modifier!r}", name)
            candidates = [modifier]
        else:
            candidates = list(p.targets) or sorted(resource_types())
        chain_code = chain.split(":", 1)[0].split(".", 1)[0]
        targets = [
            t
            for t in candidates
            if chain_code.startswith("_has") or get_param(t, chain_code) is not None
        ]
        if not targets:
            self.ctx.unknown(name, f"Unknown chained parameter {chain_code!r} for {p.code!r}")
            return None
        ref = INDEX_TABLES["reference"].alias()
        per_type = []
        for tt in targets:
            inner = self.clause(
                tt, chain, value, literal(tt), ref.c.target_id, top=False, depth=depth + 1
            )
            if inner is None:
                return None
            per_type.append(and_(ref.c.target_type == tt, inner))
        sub = select(ref.c.res_id).where(ref.c.param == p.code, or_(*per_type))
        if rtype is None:
            return None
        return ic.in_(sub.where(ref.c.res_type == rtype))

    def _has(
        self, rtype: str | None, name: str, value: str, ic: Any, depth: int
    ) -> ColumnElement[bool] | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise bad_request(
                f"Invalid _has parameter {name!r} (use _has:Type:reference:parameter)", name
            )
        _, src_type, ref_code, rest = parts
        if rtype is None:
            self.ctx.unknown(name, "_has is not supported in a system-level search")
            return None
        if depth >= CHAIN_DEPTH:
            raise not_supported(f"_has nested deeper than {CHAIN_DEPTH} is not supported", name)
        if src_type not in resource_types():
            raise bad_request(f"Unknown resource type {src_type!r} in {name}", name)
        rp = get_param(src_type, ref_code)
        if rp is None or rp.type != "reference":
            self.ctx.unknown(name, f"{src_type} has no reference parameter {ref_code!r}")
            return None
        ref = INDEX_TABLES["reference"].alias()
        inner = self.clause(
            src_type, rest, value, literal(src_type), ref.c.res_id, top=False, depth=depth + 1
        )
        if inner is None:
            return None
        sub = select(ref.c.target_id).where(
            ref.c.res_type == src_type,
            ref.c.param == ref_code,
            ref.c.target_type == rtype,
            inner,
        )
        return ic.in_(sub)

    # -- sorting ----------------------------------------------------------------------------

    def order_by(self, rtype: str | None, value: str) -> list[UnaryExpression[Any]]:
        out: list[UnaryExpression[Any]] = []
        for key in _or_values(value):
            desc = key.startswith("-")
            code = key[1:] if desc else key
            if code == "_id":
                out.append(resources.c.res_id.desc() if desc else resources.c.res_id.asc())
                continue
            if code == "_lastUpdated":
                col = resources.c.last_updated
                out.append(col.desc() if desc else col.asc())
                continue
            p = get_param(rtype, code) if rtype else None
            if p is None or p.type in ("composite", "special") or not p.expression:
                self.ctx.unknown("_sort", f"Cannot sort by {code!r}")
                continue
            t = INDEX_TABLES[p.type].alias()
            col_name = {
                "string": "value",
                "token": "code",
                "number": "value",
                "quantity": "value",
                "uri": "value",
                "reference": "target_id",
            }.get(p.type)
            if p.type == "date":
                col_name = "high" if desc else "low"
            assert col_name is not None
            agg = func.max(t.c[col_name]) if desc else func.min(t.c[col_name])
            sub = (
                select(agg)
                .where(
                    t.c.res_type == resources.c.res_type,
                    t.c.res_id == resources.c.res_id,
                    t.c.param == p.code,
                )
                .scalar_subquery()
            )
            out.append(sub.desc().nulls_last() if desc else sub.asc().nulls_last())
        return out


# ------------------------------------------------------------------------------ execution


def _query_string(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe=':._-')}={quote(v, safe=':/|,$._-~')}" for k, v in params)


def _page_link(prefix: str, snapshot: str, offset: int, count: int) -> str:
    return f"{prefix}?_getpages={snapshot}&_getpagesoffset={offset}&_count={count}"


def _int_param(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0 or not value.strip().isdigit():
        raise bad_request(f"Invalid {name} {value!r} (a non-negative integer)", name)
    return n


def _load(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t, ids in by_type.items():
        for k in range(0, len(ids), 500):
            rows = conn.execute(
                select(resources.c.res_type, resources.c.res_id, resources.c.content).where(
                    resources.c.res_type == t,
                    resources.c.res_id.in_(ids[k : k + 500]),
                    resources.c.deleted == false(),
                )
            )
            for rt, rid, content in rows:
                if content:
                    out[(rt, rid)] = orjson.loads(content)
    return out


@dataclass
class _IncludeSpec:
    source: str | None  # None: every type (`*`)
    param: str | None  # None: every reference parameter
    target: str | None
    iterate: bool
    reverse: bool


def _parse_includes(ctx: _Ctx, params: list[tuple[str, str]]) -> list[_IncludeSpec]:
    specs = []
    for name, value in params:
        base, _, mod = name.partition(":")
        if base not in ("_include", "_revinclude"):
            continue
        if mod not in ("", "iterate", "recurse"):
            ctx.unknown(name, f"Unknown modifier {mod!r} on {base}")
            continue
        reverse = base == "_revinclude"
        iterate = mod in ("iterate", "recurse")
        if value == "*":
            specs.append(_IncludeSpec(None, None, None, iterate, reverse))
            continue
        parts = value.split(":")
        if len(parts) not in (2, 3) or parts[0] not in resource_types():
            raise bad_request(f"Invalid {base} value {value!r} (Type:parameter[:TargetType])", name)
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in resource_types():
            raise bad_request(f"Invalid target type {target!r} in {base}", name)
        if parts[1] == "*":
            specs.append(_IncludeSpec(parts[0], None, target, iterate, reverse))
            continue
        p = get_param(parts[0], parts[1])
        if p is None or p.type != "reference":
            ctx.unknown(name, f"{parts[0]} has no reference parameter {parts[1]!r}")
            continue
        specs.append(_IncludeSpec(parts[0], parts[1], target, iterate, reverse))
    return specs


def _include_round(
    conn: Connection, specs: list[_IncludeSpec], current: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    ref = INDEX_TABLES["reference"]
    found: list[tuple[str, str]] = []
    by_type: dict[str, list[str]] = {}
    for res in current:
        by_type.setdefault(res["resourceType"], []).append(res["id"])
    for spec in specs:
        if not spec.reverse:
            for src, ids in by_type.items():
                if spec.source is not None and src != spec.source:
                    continue
                q = select(ref.c.target_type, ref.c.target_id).where(
                    ref.c.res_type == src,
                    ref.c.res_id.in_(ids),
                    ref.c.target_id.is_not(None),
                )
                if spec.param is not None:
                    q = q.where(ref.c.param == spec.param)
                else:
                    q = q.where(
                        ref.c.param.in_(
                            [p.code for p in params_for(src).values() if p.type == "reference"]
                        )
                    )
                if spec.target is not None:
                    q = q.where(ref.c.target_type == spec.target)
                found.extend(
                    (tt, tid)
                    for tt, tid in conn.execute(q.order_by(ref.c.target_type, ref.c.target_id))
                )
        else:
            for tgt, ids in by_type.items():
                if spec.target is not None and tgt != spec.target:
                    continue
                q = select(ref.c.res_type, ref.c.res_id).where(
                    ref.c.target_type == tgt, ref.c.target_id.in_(ids)
                )
                if spec.source is not None:
                    q = q.where(ref.c.res_type == spec.source)
                if spec.param is not None:
                    q = q.where(ref.c.param == spec.param)
                found.extend(
                    (rt, rid) for rt, rid in conn.execute(q.order_by(ref.c.res_type, ref.c.res_id))
                )
    return found


def _includes(
    conn: Connection, specs: list[_IncludeSpec], matches: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not specs or not matches:
        return []
    seen = {(m["resourceType"], m["id"]) for m in matches}
    out: list[dict[str, Any]] = []
    current = matches
    active = specs
    for _round in range(1 + INCLUDE_DEPTH):
        keys = []
        for k in _include_round(conn, active, current):
            if k not in seen:
                seen.add(k)
                keys.append(k)
        loaded = _load(conn, keys)
        current = [loaded[k] for k in keys if k in loaded]
        out.extend(current)
        active = [s for s in specs if s.iterate]
        if not current or not active:
            break
    return out


def search(
    conn: Connection,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
    tz: str = "Asia/Shanghai",
    default_count: int = 20,
    max_count: int = 1000,
    now_ms: int | None = None,
) -> SearchResult:
    """Run a FHIR search of ``res_type`` (None: all types) with decoded (name, value) pairs."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    ctx = _Ctx(strict=strict, tz=tz, now_ms=now, sqlite=conn.dialect.name == "sqlite")
    for name, value in params:
        _check_text(name, name)
        _check_text(value, name)
    if res_type is not None and res_type not in resource_types():
        raise bad_request(f"Unknown resource type {res_type!r}", res_type)
    prefix = res_type or ""

    control = {
        name: value
        for name, value in params
        if name in RESULT_PARAMS or name.split(":")[0] in RESULT_PARAMS
    }
    count = default_count
    if "_count" in control:
        count = min(_int_param("_count", control["_count"]), max_count)
    total_mode = control.get("_total", "accurate")
    if total_mode not in ("none", "estimate", "accurate"):
        raise bad_request(f"Invalid _total {total_mode!r} (none, estimate or accurate)", "_total")
    if control.get("_summary") == "count":
        count = 0
        total_mode = "accurate"
    if "_getpages" in control:
        return _from_snapshot(conn, ctx, prefix, control, count)

    compiler = _Compiler(ctx)
    where: list[ColumnElement[bool]] = [resources.c.deleted == false()]
    if res_type is not None:
        where.append(resources.c.res_type == res_type)
    order: list[UnaryExpression[Any]] = []
    for name, value in params:
        base = name.split(":")[0]
        if base in ("_include", "_revinclude"):
            continue
        if base in RESULT_PARAMS or base in API_PARAMS:
            if base == "_sort":
                order.extend(compiler.order_by(res_type, value))
            elif base == "_type" and res_type is None:
                types = _or_values(value)
                bad = [t for t in types if t not in resource_types()]
                if bad:
                    raise bad_request(f"Unknown resource type {bad[0]!r} in _type", "_type")
                if types:
                    where.append(resources.c.res_type.in_(types))
            elif base in ("_contained", "_containedType") and value not in ("false", ""):
                ctx.unknown(name, f"{base} is not supported", unsupported=True)
            continue
        if value == "":
            continue
        seen_issues = len(ctx.issues)
        try:
            clause = compiler.clause(
                res_type, name, value, resources.c.res_type, resources.c.res_id, top=True
            )
        except OperationOutcomeError as exc:
            # Problems found inside a chain or _has point at the whole parameter.
            exc.issues = [replace(i, expression=(name,)) for i in exc.issues]
            raise
        ctx.issues[seen_issues:] = [
            replace(i, expression=(name,)) for i in ctx.issues[seen_issues:]
        ]
        if clause is not None:
            where.append(clause)
    includes = _parse_includes(ctx, params)
    order.extend(
        [resources.c.res_type.asc(), resources.c.res_id.asc()]
        if res_type is None
        else [resources.c.res_id.asc()]
    )

    self_params = [(n, v) for n, v in params if n not in ("_getpages", "_getpagesoffset")]
    links = {"self": f"{prefix}?{_query_string(self_params)}"}
    if count == 0:
        total = None if total_mode == "none" else _count(conn, where)
        return SearchResult([], [], total, links, ctx.issues)

    rows = conn.execute(
        select(resources.c.res_type, resources.c.res_id, resources.c.content)
        .where(*where)
        .order_by(*order)
        .limit(count + 1)
    ).all()
    if len(rows) <= count:
        matches = [orjson.loads(r.content) for r in rows if r.content]
        total = None if total_mode == "none" else len(matches)
        return SearchResult(matches, _includes(conn, includes, matches), total, links, ctx.issues)

    # More than one page: freeze the ordered id list so that later pages do not shift.
    keys = [
        (r.res_type, r.res_id)
        for r in conn.execute(
            select(resources.c.res_type, resources.c.res_id)
            .where(*where)
            .order_by(*order)
            .limit(SNAPSHOT_MAX)
        )
    ]
    total_all = len(keys) if len(keys) < SNAPSHOT_MAX else _count(conn, where)
    snapshot = str(uuid.uuid4())
    conn.execute(delete(search_snapshots).where(search_snapshots.c.created < now - SNAPSHOT_TTL_MS))
    conn.execute(
        delete(search_snapshot_meta).where(search_snapshot_meta.c.created < now - SNAPSHOT_TTL_MS)
    )
    conn.execute(
        insert(search_snapshot_meta),
        [
            {
                "snapshot_id": snapshot,
                "res_type": res_type or "",
                "query": orjson.dumps(self_params).decode(),
                "total": total_all,
                "created": now,
            }
        ],
    )
    conn.execute(
        insert(search_snapshots),
        [
            {"snapshot_id": snapshot, "position": i, "res_type": t, "res_id": rid, "created": now}
            for i, (t, rid) in enumerate(keys)
        ],
    )
    matches = [orjson.loads(r.content) for r in rows[:count] if r.content]
    links.update(_paging_links(prefix, snapshot, 0, count, len(keys)))
    total = None if total_mode == "none" else total_all
    return SearchResult(matches, _includes(conn, includes, matches), total, links, ctx.issues)


def _check_text(text: str, name: str) -> None:
    # NUL and lone surrogates cannot be sent to PostgreSQL; refuse them as bad input.
    if "\x00" in text:
        raise bad_request(f"Parameter {name!r} contains a NUL character", name)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"Parameter {name!r} is not valid UTF-8 text", name) from None


def _count(conn: Connection, where: list[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).select_from(resources).where(*where)).scalar_one())


def _paging_links(prefix: str, snapshot: str, offset: int, count: int, size: int) -> dict[str, str]:
    links = {"first": _page_link(prefix, snapshot, 0, count)}
    if offset > 0:
        links["previous"] = _page_link(prefix, snapshot, max(0, offset - count), count)
    if offset + count < size:
        links["next"] = _page_link(prefix, snapshot, offset + count, count)
    links["last"] = _page_link(prefix, snapshot, max(0, (size - 1) // count * count), count)
    return links


def _from_snapshot(
    conn: Connection, ctx: _Ctx, prefix: str, control: dict[str, str], count: int
) -> SearchResult:
    snapshot = control["_getpages"]
    offset = _int_param("_getpagesoffset", control.get("_getpagesoffset", "0"))
    if count == 0:
        count = 1
    meta = conn.execute(
        select(search_snapshot_meta).where(search_snapshot_meta.c.snapshot_id == snapshot[:64])
    ).first()
    if meta is None or meta.created < ctx.now_ms - SNAPSHOT_TTL_MS:
        raise gone("The search result set has expired; run the search again")
    stored: list[tuple[str, str]] = [(n, v) for n, v in orjson.loads(meta.query)]
    size = int(
        conn.execute(
            select(func.count())
            .select_from(search_snapshots)
            .where(search_snapshots.c.snapshot_id == meta.snapshot_id)
        ).scalar_one()
    )
    s = search_snapshots
    rows = conn.execute(
        select(resources.c.content)
        .select_from(
            s.join(
                resources,
                and_(resources.c.res_type == s.c.res_type, resources.c.res_id == s.c.res_id),
            )
        )
        .where(
            s.c.snapshot_id == meta.snapshot_id,
            s.c.position >= offset,
            s.c.position < offset + count,
            resources.c.deleted == false(),
        )
        .order_by(s.c.position)
    ).all()
    matches = [orjson.loads(r.content) for r in rows if r.content]
    links = {"self": _page_link(prefix, meta.snapshot_id, offset, count)}
    links.update(_paging_links(prefix, meta.snapshot_id, offset, count, size))
    includes = _includes(conn, _parse_includes(ctx, stored), matches)
    total_mode = dict(stored).get("_total", "accurate")
    return SearchResult(
        matches, includes, None if total_mode == "none" else int(meta.total), links, ctx.issues
    )


__all__ = ["SearchResult", "search"]
