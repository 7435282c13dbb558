"""The FHIR R4 (4.0.1) search-parameter registry: which parameters each resource type has.

Data comes from ``searchparams_r4.json.gz``, derived from the official definitions by
``tools/build_search_parameters.py`` (see docs/fhir-search.md).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as _res
from typing import Any

# Parameters that apply to every resource type (R4 3.1.1.5 / Resource-*). `_id` and
# `_lastUpdated` are answered from the resources table; the others have index rows.
COMMON_CODES = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")

# Result and control parameters: handled by the search executor or the API, never indexed.
RESULT_PARAMS = frozenset(
    {
        "_sort",
        "_count",
        "_total",
        "_summary",
        "_elements",
        "_format",
        "_pretty",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_getpages",
        "_getpagesoffset",
        "_type",
    }
)


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the component parameter's code and type, and its
    FHIRPath expression relative to the composite's element."""

    code: str
    type: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    """A search parameter as it applies to one resource type.

    ``expression`` is narrowed to the parts of the official expression that concern
    ``resource_type`` (the official ones of shared parameters such as ``patient`` list many
    types joined by ``|``).
    """

    code: str
    type: str
    resource_type: str
    expression: str | None
    base: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    multiple_or: bool = True
    multiple_and: bool = True
    comparators: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    id: str = ""
    xpath_usage: str = "normal"
    # Answered from the resources table (no index rows).
    from_resource_table: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://hl7.org/fhir/SearchParameter/{self.id}"


@cache
def _data() -> dict[str, Any]:
    blob = _res.files("carenet.fhir").joinpath("searchparams_r4.json.gz").read_bytes()
    data: dict[str, Any] = json.loads(gzip.decompress(blob))
    return data


def resource_types() -> frozenset[str]:
    """Every concrete R4 resource type."""
    return _resource_types()


@cache
def _resource_types() -> frozenset[str]:
    return frozenset(_data()["resourceTypes"])


@cache
def choice_elements() -> frozenset[str]:
    """Names of elements that are choice types (``value[x]`` → ``value``) somewhere in R4."""
    return frozenset(_data()["choiceElements"])


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type → the parameters that put it in a Patient's compartment."""
    return {k: tuple(v) for k, v in _data()["patientCompartment"].items()}


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` operators."""
    parts: list[str] = []
    depth = 0
    quote = False
    start = 0
    for i, ch in enumerate(expression):
        if quote:
            if ch == "'" and expression[i - 1] != "\\":
                quote = False
        elif ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _root_of(part: str) -> str:
    p = part.lstrip("( ")
    end = 0
    while end < len(p) and (p[end].isalnum() or p[end] == "_"):
        end += 1
    return p[:end]


def narrow_expression(expression: str, resource_type: str) -> str | None:
    """The parts of ``expression`` that start at ``resource_type`` (or at Resource/DomainResource,
    rewritten to start at ``resource_type``)."""
    kept: list[str] = []
    for part in split_union(expression):
        root = _root_of(part)
        if root == resource_type:
            kept.append(part)
        elif root in ("Resource", "DomainResource"):
            kept.append(part.replace(root, resource_type, 1))
    return " | ".join(kept) if kept else None


def _make(raw: dict[str, Any], resource_type: str) -> SearchParam:
    expr = raw.get("expression")
    narrowed = narrow_expression(expr, resource_type) if expr else None
    return SearchParam(
        code=raw["code"],
        type=raw["type"],
        resource_type=resource_type,
        expression=narrowed,
        base=tuple(raw["base"]),
        targets=tuple(raw.get("target", ())),
        multiple_or=raw.get("multipleOr", True),
        multiple_and=raw.get("multipleAnd", True),
        comparators=tuple(raw.get("comparator", ())),
        modifiers=tuple(raw.get("modifier", ())),
        components=tuple(
            Component(c["code"], c["type"] or "token", c["expression"])
            for c in raw.get("component", ())
        ),
        id=raw["id"],
        xpath_usage=raw.get("xpathUsage", "normal"),
        from_resource_table=raw["code"] in ("_id", "_lastUpdated"),
    )


@cache
def _by_type() -> dict[str, dict[str, SearchParam]]:
    data = _data()
    types = data["resourceTypes"]
    common = [p for p in data["params"] if set(p["base"]) & {"Resource", "DomainResource"}]
    out: dict[str, dict[str, SearchParam]] = {t: {} for t in types}
    for t in types:
        for raw in common:
            if "DomainResource" in raw["base"] and t in ("Bundle", "Binary", "Parameters"):
                continue
            out[t][raw["code"]] = _make(raw, t)
    for raw in data["params"]:
        for base in raw["base"]:
            if base in out:
                out[base][raw["code"]] = _make(raw, base)
    return out


def params_for(resource_type: str) -> dict[str, SearchParam]:
    """All search parameters of ``resource_type`` by code (empty for an unknown type)."""
    return _by_type().get(resource_type, {})


def get_param(resource_type: str | None, code: str) -> SearchParam | None:
    """One parameter, or None. With ``resource_type`` None: the parameters valid for a
    system-level search (the common ones)."""
    if resource_type is None:
        if code in COMMON_CODES:
            return _by_type()["Patient"][code]
        return None
    return _by_type().get(resource_type, {}).get(code)


def reference_params(resource_type: str) -> list[SearchParam]:
    """The reference-type parameters of a resource type (for ``_include=Type:*``)."""
    return [p for p in params_for(resource_type).values() if p.type == "reference"]
