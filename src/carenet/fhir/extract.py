"""Evaluates search-parameter FHIRPath expressions on resource dicts, fast.

R4 search expressions are nearly all simple paths joined by ``|``; those are compiled once into
small step programs run by a tight loop (``compile_expression``). Anything else falls back to
fhirpathpy, which is ~100 times slower.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from carenet.fhir.searchparams import choice_elements, resource_types, split_union

log = logging.getLogger(__name__)

Extractor = Callable[[dict[str, Any]], list[Any]]

# Type suffixes that a choice element [x] can take in JSON (valueQuantity, onsetDateTime...).
CHOICE_SUFFIXES = frozenset(
    """Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Markdown Oid
    PositiveInt String Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment
    CodeableConcept Coding ContactPoint Count Distance Duration HumanName Identifier Money Period
    Quantity Range Ratio Reference SampledData Signature Timing ContactDetail Contributor
    DataRequirement Expression ParameterDefinition RelatedArtifact TriggerDefinition UsageContext
    Dosage Meta""".split()
)

# Step opcodes.
_FIELD, _CHOICE, _WHERE_REF, _WHERE_EQ, _INDEX, _EXISTS, _EXT, _RTYPE = range(8)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP_RE = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<idx>\d+)\])?(?!\()
      | where\(\s*resolve\(\)\s+is\s+(?P<rtype>[A-Za-z]+)\s*\)
      | where\(\s*(?P<wfield>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*'(?P<wval>[^']*)'\s*\)
      | (?:as|ofType)\(\s*(?P<as>[A-Za-z]+)\s*\)
      | (?P<exists>exists)\(\s*\)
      | (?P<first>first)\(\s*\)
      | extension\(\s*'(?P<ext>[^']*)'\s*\)
    )\s*""",
    re.X,
)
_AS_SUFFIX_RE = re.compile(r"^(?P<path>.*?)\s+as\s+(?P<type>" + _NAME + r")\s*$", re.S)
_DECEASED_RE = re.compile(r"^(?P<p>[A-Za-z.]+)\.exists\(\) and (?P=p) != false$")


class _Unsupported(Exception):
    """The expression is outside the hand-compiled subset."""


def _cap(type_name: str) -> str:
    return type_name[:1].upper() + type_name[1:]


def _split_steps(path: str) -> list[str]:
    """Split on '.' outside parentheses and quotes."""
    steps: list[str] = []
    depth = 0
    quote = False
    cur: list[str] = []
    for ch in path:
        if quote:
            cur.append(ch)
            if ch == "'":
                quote = False
            continue
        if ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "." and depth == 0:
            steps.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    steps.append("".join(cur))
    return steps


def _compile_path(part: str, root: str | None) -> tuple[tuple[int, Any], ...]:
    part = part.strip()
    if part.startswith("("):
        close = _matching_paren(part)
        rest = part[close + 1 :].strip()
        if close > 0 and rest.startswith("."):
            # "(Observation.value as CodeableConcept).text"
            return _compile_path(part[1:close], root) + _compile_steps(_split_steps(rest[1:]))
    while part.startswith("(") and part.endswith(")") and _balanced(part[1:-1]):
        part = part[1:-1].strip()
    as_type: str | None = None
    m = _AS_SUFFIX_RE.match(part)
    if m:
        part, as_type = m.group("path").strip(), m.group("type")
        while part.startswith("(") and part.endswith(")") and _balanced(part[1:-1]):
            part = part[1:-1].strip()
    steps = _split_steps(part)
    if root is not None:
        if not steps or steps[0].strip() != root:
            raise _Unsupported(part)
        steps = steps[1:]
    if as_type is not None:
        steps.append(f"as({as_type})")
    return _compile_steps(steps)


def _matching_paren(s: str) -> int:
    depth = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _compile_steps(steps: list[str]) -> tuple[tuple[int, Any], ...]:
    ops: list[tuple[int, Any]] = []
    choices = choice_elements()
    rtypes = resource_types()
    for raw in steps:
        sm = _STEP_RE.fullmatch(raw)
        if not sm:
            raise _Unsupported(raw)
        if sm.group("name"):
            name = sm.group("name")
            if name in ("as", "is", "and", "or", "where", "resolve", "not", "empty"):
                raise _Unsupported(raw)
            ops.append((_CHOICE if name in choices else _FIELD, name))
            if sm.group("idx") is not None:
                ops.append((_INDEX, int(sm.group("idx"))))
        elif sm.group("rtype"):
            ops.append((_WHERE_REF, sm.group("rtype")))
        elif sm.group("wfield"):
            ops.append((_WHERE_EQ, (sm.group("wfield"), sm.group("wval"))))
        elif sm.group("as"):
            t = sm.group("as")
            if ops and ops[-1][0] == _CHOICE:
                ops[-1] = (_FIELD, ops[-1][1] + _cap(t))
            elif t in rtypes:
                ops.append((_RTYPE, t))
            # else: a type test on a non-choice element we cannot check without type info
        elif sm.group("exists"):
            ops.append((_EXISTS, None))
        elif sm.group("first"):
            ops.append((_INDEX, 0))
        elif sm.group("ext") is not None:
            ops.append((_FIELD, "extension"))
            ops.append((_WHERE_EQ, ("url", sm.group("ext"))))
    return tuple(ops)


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def reference_type(ref: Any) -> str | None:
    """The resource type a Reference dict points to, or None when it cannot be told."""
    if type(ref) is not dict:
        return None
    s = ref.get("reference")
    if isinstance(s, str) and not s.startswith("#"):
        parts = s.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2] in resource_types():
            return parts[-2]
    t = ref.get("type")
    return t if isinstance(t, str) else None


def _run(nodes: list[Any], ops: tuple[tuple[int, Any], ...]) -> list[Any]:
    for op, arg in ops:
        if not nodes:
            break
        new: list[Any] = []
        if op == _FIELD:
            for n in nodes:
                if type(n) is dict:
                    v = n.get(arg)
                    if v is not None:
                        if type(v) is list:
                            new.extend(v)
                        else:
                            new.append(v)
        elif op == _CHOICE:
            for n in nodes:
                if type(n) is not dict:
                    continue
                v = n.get(arg)
                if v is None:
                    plen = len(arg)
                    for k in n:
                        if k.startswith(arg) and k[plen:] in CHOICE_SUFFIXES:
                            v = n[k]
                            break
                    else:
                        continue
                if type(v) is list:
                    new.extend(v)
                else:
                    new.append(v)
        elif op == _WHERE_REF:
            new = [n for n in nodes if reference_type(n) == arg]
        elif op == _WHERE_EQ:
            f, val = arg
            new = [n for n in nodes if type(n) is dict and n.get(f) == val]
        elif op == _INDEX:
            new = nodes[arg : arg + 1]
        elif op == _EXISTS:
            new = [True]
        elif op == _RTYPE:
            new = [n for n in nodes if type(n) is dict and n.get("resourceType") == arg]
        nodes = new
    if ops and ops[-1][0] == _EXISTS and not nodes:
        return [False]
    return nodes


def _fallback(expression: str) -> Extractor:
    import fhirpathpy
    from fhirpathpy.models import models

    try:
        fn = fhirpathpy.compile(expression, models["r4"])
    except Exception:  # noqa: BLE001 - an expression fhirpathpy cannot parse indexes nothing
        log.warning("search expression not evaluable", extra={"expression": expression})
        return lambda _r: []

    def run(resource: dict[str, Any]) -> list[Any]:
        try:
            return list(fn(resource, {}))
        except Exception:  # noqa: BLE001 - e.g. resolve() on an unresolvable reference
            return []

    return run


@lru_cache(maxsize=8192)
def compile_expression(expression: str, root: str | None = None) -> Extractor:
    """Compile a FHIRPath expression to a function ``resource -> list of values``.

    ``root`` is the type name the expression starts with (``Observation`` for
    ``Observation.code``); None for an expression relative to its input (composite components).
    """
    m = _DECEASED_RE.match(expression.strip())
    if m:
        inner = compile_expression(m.group("p"), root)

        def deceased(resource: dict[str, Any]) -> list[Any]:
            vals = inner(resource)
            return [bool(vals) and vals != [False]]

        return deceased
    try:
        programs = [_compile_path(p, root) for p in split_union(expression)]
    except _Unsupported:
        return _fallback(expression)
    runs = [_program(ops) for ops in programs]
    if len(runs) == 1:
        return runs[0]

    def union(resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for run in runs:
            out.extend(run(resource))
        return out

    return union


_ABSENT = object()


def _get(node: dict[str, Any], name: str, choice: bool) -> Any:
    """What a _FIELD or _CHOICE step reads from one object (_ABSENT when nothing)."""
    v = node.get(name)
    if v is not None:
        return v
    if choice:
        plen = len(name)
        for k in node:
            if k.startswith(name) and k[plen:] in CHOICE_SUFFIXES:
                return node[k]
    return _ABSENT


def _program(ops: tuple[tuple[int, Any], ...]) -> Extractor:
    """A function running one step program. The commonest shapes of R4 search parameters —
    the resource itself, ``Type.element`` and ``Type.element.element`` — run without the
    generic step loop: indexing runs some twenty of them per resource."""
    if not ops:
        return lambda resource: [resource]
    if len(ops) > 2 or any(op not in (_FIELD, _CHOICE) for op, _ in ops):
        return lambda resource: _run([resource], ops)
    name, choice = ops[0][1], ops[0][0] == _CHOICE
    if len(ops) == 1:

        def one(resource: dict[str, Any]) -> list[Any]:
            v = _get(resource, name, choice) if type(resource) is dict else _ABSENT
            if v is _ABSENT:
                return []
            return list(v) if type(v) is list else [v]

        return one
    inner, inner_choice = ops[1][1], ops[1][0] == _CHOICE

    def two(resource: dict[str, Any]) -> list[Any]:
        v = _get(resource, name, choice) if type(resource) is dict else _ABSENT
        if v is _ABSENT:
            return []
        out: list[Any] = []
        for n in v if type(v) is list else (v,):
            if type(n) is dict:
                w = _get(n, inner, inner_choice)
                if w is not _ABSENT:
                    if type(w) is list:
                        out.extend(w)
                    else:
                        out.append(w)
        return out

    return two


@lru_cache(maxsize=8192)
def root_elements(expression: str, root: str | None = None) -> frozenset[str] | None:
    """The top-level JSON keys of its input that ``expression`` can read (``root`` as for
    ``compile_expression``): when the input has none of them, the expression yields nothing and
    need not run. None when that cannot be told (fhirpathpy fallbacks; ``exists()``, which
    yields false on nothing; an expression that is the root itself)."""
    if _DECEASED_RE.match(expression.strip()):
        return None
    try:
        programs = [_compile_path(p, root) for p in split_union(expression)]
    except _Unsupported:
        return None
    keys: set[str] = set()
    for ops in programs:
        if not ops or any(op == _EXISTS for op, _ in ops):
            return None
        op, name = ops[0]
        if op == _FIELD:
            keys.add(name)
        elif op == _CHOICE:
            keys.add(name)
            keys.update(name + suffix for suffix in CHOICE_SUFFIXES)
        else:
            return None
    return frozenset(keys)


def evaluate(resource: dict[str, Any], expression: str) -> list[Any]:
    """Evaluate an expression rooted at the resource's type."""
    return compile_expression(expression, resource.get("resourceType"))(resource)
