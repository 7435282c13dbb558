"""What a search value of each FHIR type means in SQL: one condition on that type's index table.

``TypeConditions`` turns (parameter, modifier, OR-ed values) into ``res_id IN (SELECT res_id
FROM idx_<type> WHERE ...)`` for string, token, date, number, quantity, uri, reference and
composite parameters; ``search_compiler`` adds modifiers that change the query's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
)

from carenet.fhir.outcomes import Issue, bad_request, not_supported
from carenet.fhir.searchparams import SearchParam
from carenet.fhir.sensitive import RESIDENT_ID_KIND, param_kinds
from carenet.store import indexer
from carenet.store.protection import ResourceProtection
from carenet.store.schema import INDEX_TABLES
from carenet.store.search_values import (
    parse_date,
    parse_number,
    parse_prefix,
    parse_quantity,
    split_escaped,
    unescape,
    uri_above,
)

_TABLES = {t.name: t for t in INDEX_TABLES.values()}

# Each condition reads its own copy of an index table. A new anonymous alias per condition
# costs SQLAlchemy about 0.1 ms to set up its columns, several times per search (a third of
# compiling a booking's search for the patient's appointments). Inside ``numbered_aliases``
# (one statement being compiled) the n-th condition reuses the cached alias "q<n>_<table>":
# distinct within the statement, shared between statements.
_ALIAS_SEQ: ContextVar[list[int] | None] = ContextVar("carenet_search_alias_seq", default=None)


@contextmanager
def numbered_aliases() -> Iterator[None]:
    """Number the index-table aliases of the statement compiled inside (nested: continue)."""
    if _ALIAS_SEQ.get() is not None:
        yield
        return
    token = _ALIAS_SEQ.set([0])
    try:
        yield
    finally:
        _ALIAS_SEQ.reset(token)


@cache
def _numbered(table_name: str, n: int) -> Any:
    return _TABLES[table_name].alias(f"q{n}_{table_name}")


def index_alias(table: Table) -> Any:
    """An alias of an index table for one condition (see ``numbered_aliases``)."""
    seq = _ALIAS_SEQ.get()
    if seq is None:
        return table.alias()
    n = seq[0]
    seq[0] += 1
    return _numbered(table.name, n)


Visible = Callable[[str | None, ColumnElement[Any], ColumnElement[Any]], ColumnElement[bool] | None]
"""Access control inside search: ``visible(res_type, type_col, id_col)`` is a SQL condition that
is true for the resources the caller may see, or None for no restriction on that type.
``res_type`` is the concrete type when known (``type_col`` may then be ignored), None in a
system-level search, where the condition must use ``type_col``."""

Alternatives = Callable[[str | None, str], list[str]]
"""``alternatives(system, code)``: further codes a token condition on ``system|code`` matches
(the blind indexes of a resident ID or phone number, ``ResourceProtection.search_codes``)."""


def const(name: str) -> BindParameter[str]:
    """A registry name (resource type, parameter code) written into the SQL text.

    PostgreSQL then keeps one prepared plan per (type, parameter) shape, planned with that
    type's statistics; a plan shared by Practitioner and Patient lookups fits neither. Only
    names checked against the registry go here, never a client's value."""
    return bindparam(None, name, type_=String(), literal_execute=True)


@dataclass
class SearchContext:
    """What one search needs besides its parameters, and the warnings it collects."""

    strict: bool
    tz: str
    now_ms: int
    sqlite: bool
    issues: list[Issue] = field(default_factory=list)
    # Set when the search also has an equality condition (reference, token, ...) to drive it:
    # range conditions (date, number, quantity) are then probed per candidate (a correlated
    # EXISTS on the per-resource index) instead of listing every resource in the range, which
    # SQLite's planner would otherwise do first (one patient's observations in a date range at
    # 50,000 resources: 18 ms before, 3 ms after).
    correlate_ranges: bool = False
    # Applied to the matches, snapshot pages, included resources, chain targets and _has sources.
    visible: Visible | None = None
    # Sealed resident IDs and phone numbers: opened in results, blind-indexed in token searches.
    protection: ResourceProtection | None = None

    def alternatives(self, kinds: frozenset[str]) -> Alternatives | None:
        """Blind-index alternatives for token values of a parameter that may hold ``kinds``
        (used when the search value has no system); None without protection."""
        protection = self.protection
        if protection is None:
            return None
        return lambda system, code: protection.search_codes(system, code, kinds)

    def visible_cond(
        self, rtype: str | None, type_col: ColumnElement[Any], id_col: ColumnElement[Any]
    ) -> ColumnElement[bool] | None:
        """The caller's visibility condition on these columns, or None when unrestricted."""
        return None if self.visible is None else self.visible(rtype, type_col, id_col)

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


def starts_with(col: Any, prefix: str) -> ColumnElement[bool]:
    """``col LIKE 'prefix%'`` with the whole pattern as one bound value.

    SQLAlchemy's ``startswith`` sends ``LIKE :p || '%'``, an expression that PostgreSQL can match
    to a ``varchar_pattern_ops`` index only when it plans for the value at hand, not in a
    generic plan of a prepared statement."""
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return col.like(escaped + "%", escape="/")


def in_index(
    rtype: str | None,
    type_col: ColumnElement[Any],
    id_col: ColumnElement[Any],
    table_name: str,
    param: str,
    build: Any,
    *,
    negate: bool = False,
    correlated: bool = False,
) -> ColumnElement[bool]:
    """id_col IN (res_ids of ``rtype`` having a row of ``param`` that satisfies ``build(t)``),
    or, ``correlated``, EXISTS such a row for this very resource."""
    t = index_alias(_TABLES[table_name])
    conds: list[ColumnElement[bool]] = [t.c.param == const(param)]
    extra = build(t) if build is not None else None
    if extra is not None:
        conds.append(extra)
    if rtype is None or correlated:
        clause: ColumnElement[bool] = exists(
            select(literal(1)).where(t.c.res_type == type_col, t.c.res_id == id_col, *conds)
        )
    else:
        clause = id_col.in_(select(t.c.res_id).where(t.c.res_type == const(rtype), *conds))
    return not_(clause) if negate else clause


def date_cond(
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


def number_cond(
    ctx: SearchContext, col: Any, prefix: str, d: Decimal, half: Decimal
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


def token_cond(t: Any, value: str, alternatives: Alternatives | None = None) -> ColumnElement[bool]:
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        code = unescape(parts[0])
        return _code_is(t, code, alternatives(None, code) if alternatives else [])
    system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    if system == "" and code == "":
        return false()
    if system == "":
        # Sensitive values are always indexed with their system: no blind alternative here.
        return and_(t.c.system.is_(None), t.c.code == code)
    if code == "":
        return t.c.system == system
    extra = alternatives(system, code) if alternatives else []
    return and_(t.c.system == system, _code_is(t, code, extra))


def _code_is(t: Any, code: str, extra: list[str]) -> ColumnElement[bool]:
    return t.c.code == code if not extra else t.c.code.in_([code, *extra])


class TypeConditions:
    """One condition per parameter type; ``_<type>`` is looked up by the parameter's type."""

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx

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
                v = unescape(raw)
                if mod == "exact":
                    conds.append(t.c.exact == v[: indexer.STRING_MAX])
                elif mod == "contains":
                    conds.append(t.c.value.contains(indexer.normalise(v), autoescape=True))
                else:
                    conds.append(starts_with(t.c.value, indexer.normalise(v)))
            return or_(*conds)

        return in_index(rtype, tc, ic, "idx_string", p.code, build)

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
        kinds = param_kinds(rtype, p.code) if rtype is not None else frozenset()
        alternatives = self.ctx.alternatives(kinds)

        def build(t: Any) -> ColumnElement[bool]:
            if mod == "text":
                conds = []
                for raw in values:
                    n = indexer.normalise(unescape(raw))
                    conds.append(
                        or_(
                            starts_with(t.c.text, n),
                            t.c.text.contains(" " + n, autoescape=True),
                        )
                    )
                return or_(*conds)
            return or_(*(token_cond(t, v, alternatives) for v in values))

        return in_index(rtype, tc, ic, "idx_token", p.code, build, negate=mod == "not")

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
        parsed = [parse_date(v, name, self.ctx.tz) for v in values]

        def build(t: Any) -> ColumnElement[bool]:
            return or_(
                *(
                    date_cond(pr, t.c.low, t.c.high, lo, hi, self.ctx.now_ms)
                    for pr, lo, hi in parsed
                )
            )

        return in_index(
            rtype, tc, ic, "idx_date", p.code, build, correlated=self.ctx.correlate_ranges
        )

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
            prefix, rest = parse_prefix(v, name)
            parsed.append((prefix, *parse_number(rest, name)))

        def build(t: Any) -> ColumnElement[bool]:
            return or_(*(number_cond(self.ctx, t.c.value, pr, d, h) for pr, d, h in parsed))

        return in_index(
            rtype, tc, ic, "idx_number", p.code, build, correlated=self.ctx.correlate_ranges
        )

    def _quantity_cond(
        self, t: Any, q: tuple[str, Decimal, Decimal, str | None, str | None]
    ) -> ColumnElement[bool]:
        prefix, d, half, system, code = q
        conds = [number_cond(self.ctx, t.c.value, prefix, d, half)]
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
        parsed = [parse_quantity(v, name) for v in values]
        return in_index(
            rtype,
            tc,
            ic,
            "idx_quantity",
            p.code,
            lambda t: or_(*(self._quantity_cond(t, q) for q in parsed)),
            correlated=self.ctx.correlate_ranges,
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
                v = unescape(raw)
                if mod == "below":
                    conds.append(
                        or_(
                            t.c.value == v,
                            starts_with(t.c.value, v.rstrip("/") + "/"),
                        )
                    )
                elif mod == "above":
                    conds.append(t.c.value.in_(uri_above(v)))
                else:
                    conds.append(t.c.value == v)
            return or_(*conds)

        return in_index(rtype, tc, ic, "idx_uri", p.code, build)

    def _reference_cond(
        self, t: Any, p: SearchParam, name: str, mod: str, raw: str
    ) -> ColumnElement[bool]:
        v = unescape(raw)
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
            alternatives = self.ctx.alternatives(frozenset({RESIDENT_ID_KIND}))
            return in_index(
                rtype,
                tc,
                ic,
                "idx_token",
                p.code,
                lambda t: or_(*(token_cond(t, v, alternatives) for v in values)),
            )
        return in_index(
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
            tables = [index_alias(INDEX_TABLES[c.type]) for c in comps]
            first = tables[0]
            conds: list[ColumnElement[bool]] = [
                starts_with(first.c.param, p.code + "#"),
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
                ors.append(
                    ic.in_(select(first.c.res_id).where(first.c.res_type == const(rtype), *conds))
                )
        return or_(*ors)

    def _component_cond(self, t: Any, ctype: str, value: str, name: str) -> ColumnElement[bool]:
        if ctype == "token":
            return token_cond(t, value, self.ctx.alternatives(frozenset()))
        if ctype == "quantity":
            return self._quantity_cond(t, parse_quantity(value, name))
        if ctype == "date":
            pr, lo, hi = parse_date(value, name, self.ctx.tz)
            return date_cond(pr, t.c.low, t.c.high, lo, hi, self.ctx.now_ms)
        if ctype == "number":
            prefix, rest = parse_prefix(value, name)
            d, half = parse_number(rest, name)
            return number_cond(self.ctx, t.c.value, prefix, d, half)
        if ctype == "string":
            return starts_with(t.c.value, indexer.normalise(unescape(value)))
        if ctype == "uri":
            return t.c.value == unescape(value)
        return t.c.target_id == unescape(value)

    # -- special forms ----------------------------------------------------------------------
