"""SMART on FHIR scopes: parsing (App Launch 2.x ``patient/*.rs`` and 1.0 ``patient/*.read``) and
the pure checks built on them — does a set of scopes allow an interaction, does one scope set
cover another. No I/O.

Grammar (SMART App Launch 2.0.0 §3 "Scopes and Launch Context"):

- v2 ``<context>/<type>.<permissions>[?<query>]``: context ``patient|user|system``; type a FHIR
  R4 resource type or ``*``; permissions a non-empty subsequence of ``cruds`` in that order
  (``rs``, not ``sr``); an optional query (``patient/Observation.rs?category=laboratory``) is
  kept as pairs and narrows the scope to resources matching it.
- v1 ``<context>/<type>.<read|write|*>``: read = ``rs``, write = ``cud``, ``*`` = ``cruds``
  (the v2 specification's own mapping). A bare ``*.*`` is not a SMART scope (it has no context).
- launch and identity scopes: ``openid fhirUser profile launch launch/patient launch/encounter
  offline_access online_access``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl

from carenet.fhir.searchparams import resource_types

Context = Literal["patient", "user", "system"]
CONTEXTS: Final = ("patient", "user", "system")
PERMISSION_ORDER: Final = "cruds"
V1_PERMISSIONS: Final = {"read": "rs", "write": "cud", "*": "cruds"}

#: Scopes that name no resource: identity, launch context and refresh-token lifetime.
OTHER_SCOPES: Final = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)

#: The permission each FHIR interaction needs (SMART 2.0 §3.1, "cruds").
INTERACTION_PERMISSION: Final = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
}
INTERACTIONS: Final = frozenset(INTERACTION_PERMISSION) | {"operation"}

_RESOURCE_SCOPE = re.compile(
    r"(?P<context>[A-Za-z]+)/(?P<type>\*|[A-Za-z]+)\.(?P<perm>[A-Za-z*]+)(?:\?(?P<query>.*))?",
    re.DOTALL,
)
_MAX_SCOPE_LENGTH = 1000
_MAX_SCOPES = 200


@dataclass(frozen=True, slots=True)
class Scope:
    """One scope token. Resource scopes have a context, a type and permissions; the others
    (``openid``, ``launch/patient`` ...) have only ``text``."""

    text: str
    context: Context | None = None
    resource_type: str | None = None  # a resource type or "*"
    permissions: frozenset[str] = frozenset()
    #: v2 query restriction, e.g. (("category", "laboratory"),); empty when unrestricted.
    query: tuple[tuple[str, str], ...] = ()
    version: Literal[1, 2] | None = None

    @property
    def is_resource(self) -> bool:
        return self.context is not None

    @property
    def restricted(self) -> bool:
        return bool(self.query)

    def matches_type(self, resource_type: str) -> bool:
        return self.resource_type == "*" or self.resource_type == resource_type


@dataclass(frozen=True, slots=True)
class ScopeProblem:
    code: str  # SCOPE-MALFORMED, SCOPE-CONTEXT-UNKNOWN ...
    scope: str
    message: str


@dataclass
class ScopeError(Exception):
    """Every malformed scope of a scope string, each with a stable code."""

    problems: list[ScopeProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(f"{p.code} {p.scope!r}: {p.message}" for p in self.problems)

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


def parse_scope(text: str) -> Scope:
    """One scope token; raises ScopeError (one problem) when it is malformed."""
    problem = _problem(text)
    if isinstance(problem, ScopeProblem):
        raise ScopeError([problem])
    return problem


def parse_scopes(value: str | None) -> list[Scope]:
    """A space-separated scope string (RFC 6749 §3.3) as Scopes, duplicates removed, order kept.

    Raises ScopeError listing every malformed token. An empty or blank string is no scopes.
    """
    tokens = (value or "").split(" ")
    tokens = [t for t in tokens if t != ""]
    if len(tokens) > _MAX_SCOPES:
        raise ScopeError(
            [ScopeProblem("SCOPE-TOO-MANY", "", f"more than {_MAX_SCOPES} scopes requested")]
        )
    out: list[Scope] = []
    problems: list[ScopeProblem] = []
    seen: set[str] = set()
    for token in tokens:
        if token in seen:
            continue
        seen.add(token)
        parsed = _problem(token)
        if isinstance(parsed, ScopeProblem):
            problems.append(parsed)
        else:
            out.append(parsed)
    if problems:
        raise ScopeError(problems)
    return out


def _problem(text: str) -> Scope | ScopeProblem:
    if not text or len(text) > _MAX_SCOPE_LENGTH:
        return ScopeProblem("SCOPE-MALFORMED", text[:100], "empty or over-long scope")
    # RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) — printable ASCII except
    # space, double quote and backslash.
    if any(not (0x21 <= ord(c) <= 0x7E) or c in '"\\' for c in text):
        return ScopeProblem("SCOPE-MALFORMED", text[:100], "a scope is printable ASCII only")
    if text in OTHER_SCOPES:
        return Scope(text=text)
    m = _RESOURCE_SCOPE.fullmatch(text)
    if m is None:
        return ScopeProblem("SCOPE-UNKNOWN", text, "not a SMART scope this server knows")
    context, rtype, perm, query = m["context"], m["type"], m["perm"], m["query"]
    if context not in CONTEXTS:
        return ScopeProblem("SCOPE-CONTEXT-UNKNOWN", text, "context is patient, user or system")
    if rtype != "*" and rtype not in resource_types():
        return ScopeProblem("SCOPE-RESOURCE-TYPE-UNKNOWN", text, f"{rtype} is no R4 resource type")
    if perm in V1_PERMISSIONS:
        if query is not None:
            return ScopeProblem("SCOPE-QUERY-INVALID", text, "only v2 scopes (.cruds) take a query")
        return Scope(
            text=text,
            context=context,  # type: ignore[arg-type]
            resource_type=rtype,
            permissions=frozenset(V1_PERMISSIONS[perm]),
            version=1,
        )
    if not _in_order(perm):
        return ScopeProblem(
            "SCOPE-PERMISSION-INVALID",
            text,
            "permissions are read|write|* (v1) or letters of cruds, each once, in that order",
        )
    pairs: tuple[tuple[str, str], ...] = ()
    if query is not None:
        try:
            parsed = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
        except ValueError:
            parsed = []
        if not parsed:
            return ScopeProblem("SCOPE-QUERY-INVALID", text, "the query is empty or malformed")
        pairs = tuple(parsed)
    return Scope(
        text=text,
        context=context,  # type: ignore[arg-type]
        resource_type=rtype,
        permissions=frozenset(perm),
        query=pairs,
        version=2,
    )


def _in_order(perm: str) -> bool:
    pos = -1
    for ch in perm:
        i = PERMISSION_ORDER.find(ch)
        if i <= pos:  # unknown letter (-1), repeated or out of order
            return False
        pos = i
    return bool(perm)


def permission_for(interaction: str, needs: str | None = None) -> str:
    """The permission letters an interaction needs. ``operation`` needs ``needs`` (what the
    operation does: ``"r"`` for $everything, ``"cu"`` for $book ...), given by its caller."""
    if interaction == "operation":
        if not needs or not set(needs) <= set(PERMISSION_ORDER):
            raise ValueError("an operation must say which permissions (cruds) it needs")
        return needs
    if interaction not in INTERACTION_PERMISSION:
        raise ValueError(f"unknown interaction {interaction!r}")
    return INTERACTION_PERMISSION[interaction]


def granting_scopes(
    scopes: Iterable[Scope],
    context_kinds: Collection[str],
    resource_type: str,
    interaction: str,
    *,
    needs: str | None = None,
) -> list[Scope]:
    """The resource scopes that grant ``interaction`` on ``resource_type`` in one of
    ``context_kinds`` — restricted ones (with a query) included; see :func:`allows`."""
    required = set(permission_for(interaction, needs))
    return [
        s
        for s in scopes
        if s.is_resource
        and s.context in context_kinds
        and s.matches_type(resource_type)
        and required <= s.permissions
    ]


def allows(
    scopes: Iterable[Scope],
    context_kinds: Collection[str],
    resource_type: str,
    interaction: str,
    *,
    needs: str | None = None,
) -> bool:
    """Whether the scopes allow ``interaction`` on every ``resource_type`` resource reachable in
    one of ``context_kinds`` (``{"patient"}`` for a patient app, ``{"user"}`` for staff,
    ``{"system"}`` for a backend service).

    Interactions: read, vread, history → r; search → s; create → c; update, patch → u;
    delete → d; operation → ``needs``. One scope must hold every letter required. Scopes with a
    query restriction grant only the resources matching it, so they do not make this True: use
    :func:`restrictions` to turn them into search filters.
    """
    return any(
        not s.restricted
        for s in granting_scopes(scopes, context_kinds, resource_type, interaction, needs=needs)
    )


def restrictions(
    scopes: Iterable[Scope],
    context_kinds: Collection[str],
    resource_type: str,
    interaction: str,
    *,
    needs: str | None = None,
) -> list[tuple[tuple[str, str], ...]] | None:
    """None when :func:`allows` is True (no restriction); otherwise the queries of restricted
    granting scopes — a resource is allowed if it matches any one of them; [] means denied."""
    granting = granting_scopes(scopes, context_kinds, resource_type, interaction, needs=needs)
    if any(not s.restricted for s in granting):
        return None
    return [s.query for s in granting]


def covers(granted: Scope, requested: Scope) -> bool:
    """Whether ``granted`` includes everything ``requested`` asks for (same context; type equal
    or granted ``*``; permissions a subset; granted unrestricted or with the same query)."""
    if not granted.is_resource or not requested.is_resource:
        return granted.text == requested.text
    return (
        granted.context == requested.context
        and (granted.resource_type == "*" or granted.resource_type == requested.resource_type)
        and requested.permissions <= granted.permissions
        and (not granted.query or set(granted.query) == set(requested.query))
    )


def all_covered(allowed: Iterable[Scope], requested: Iterable[Scope]) -> bool:
    """Whether every requested scope is covered by one allowed scope (a narrower request is
    fine, a wider one is not)."""
    allowed = list(allowed)
    return all(any(covers(a, r) for a in allowed) for r in requested)


def scope_string(scopes: Iterable[Scope]) -> str:
    return " ".join(s.text for s in scopes)


def contexts_of(scopes: Iterable[Scope]) -> frozenset[str]:
    return frozenset(s.context for s in scopes if s.context is not None)


def describe(scope: Scope) -> tuple[str, str]:
    """A scope in words, Chinese and English, for the consent screen."""
    if not scope.is_resource:
        return _OTHER_TEXT.get(scope.text, (scope.text, scope.text))
    whose_zh, whose_en = {
        "patient": ("患者本人的", "the patient's"),
        "user": ("您有权访问的", "what you may access:"),
        "system": ("系统内全部", "all, as a system:"),
    }[scope.context or "user"]
    what = "全部资源" if scope.resource_type == "*" else str(scope.resource_type)
    what_en = "all resources" if scope.resource_type == "*" else str(scope.resource_type)
    zh_verbs = {"c": "创建", "r": "读取", "u": "修改", "d": "删除", "s": "检索"}
    en_verbs = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
    letters = [p for p in PERMISSION_ORDER if p in scope.permissions]
    zh = "、".join(zh_verbs[p] for p in letters) + f"{whose_zh}{what}"
    en = ", ".join(en_verbs[p] for p in letters) + f" {whose_en} {what_en}"
    if scope.query:
        cond = "&".join(f"{k}={v}" for k, v in scope.query)
        zh, en = f"{zh}（限 {cond}）", f"{en} (only {cond})"
    return zh, en


_OTHER_TEXT: Final = {
    "openid": ("确认您的身份", "confirm who you are"),
    "fhirUser": ("获知您的用户资料链接", "learn the FHIR resource you are"),
    "profile": ("获知您的用户资料", "read your profile"),
    "launch": ("在诊疗情境中启动", "launch in the current clinical context"),
    "launch/patient": ("选择一位患者", "choose a patient"),
    "launch/encounter": ("选择一次就诊", "choose an encounter"),
    "offline_access": ("长期保持访问（离线）", "keep access while you are away (offline)"),
    "online_access": ("在您在线时保持访问", "keep access while you are online"),
}
