"""Which FHIR elements hold resident ID numbers and phone numbers, and which search parameters
can find them (PRIV-1, 个人信息保护法 Art 28: sensitive personal information).

Pure FHIR knowledge, no I/O: the store encrypts what ``sensitive_elements`` names and blinds
the index rows; masking for lists and logs (``carenet.crypto.masking``) walks the same elements.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from carenet.fhir.definitions import element
from carenet.fhir.identifiers import RESIDENT_ID
from carenet.fhir.searchparams import get_param

#: Field kinds, as the field protector names them (``access.ports.FieldProtector``).
RESIDENT_ID_KIND = "resident_id"
PHONE_KIND = "phone"

#: ContactPoint systems whose value is a phone number. ``sms`` is a mobile number too.
PHONE_SYSTEMS = frozenset({"phone", "sms"})

# How these systems look in compact JSON (orjson writes no spaces): a resource whose text has
# none of them holds nothing sensitive, which spares walking it.
_MARKERS = tuple(f'"system":"{s}"' for s in (RESIDENT_ID, *sorted(PHONE_SYSTEMS)))


def kind_of(value: Any) -> str | None:
    """The kind of an Identifier (system ``RESIDENT_ID``) or ContactPoint (system ``phone`` or
    ``sms``) with a string value; None for anything else."""
    if type(value) is not dict or not isinstance(value.get("value"), str):
        return None
    system = value.get("system")
    if system == RESIDENT_ID:
        return RESIDENT_ID_KIND
    if system in PHONE_SYSTEMS:
        return PHONE_KIND
    return None


def kind_of_system(system: str | None) -> str | None:
    """The kind of values a token search with this system looks for (None: not sensitive)."""
    if system == RESIDENT_ID:
        return RESIDENT_ID_KIND
    if system in PHONE_SYSTEMS:
        return PHONE_KIND
    return None


def may_hold_sensitive(compact_json: str) -> bool:
    """False when the compact JSON of a resource certainly holds no sensitive element."""
    return any(m in compact_json for m in _MARKERS)


def sensitive_elements(node: Any, path: str = "") -> Iterator[tuple[dict[str, Any], str, str]]:
    """(element, kind, path) of every sensitive Identifier or ContactPoint anywhere in ``node``:
    ``identifier``, ``telecom``, ``contact.telecom``, ``Reference.identifier``, contained
    resources, extension values. ``path`` is FHIRPath-like (``identifier[0].value``) and never
    holds a value, so it may go into logs."""
    if type(node) is dict:
        kind = kind_of(node)
        if kind is not None:
            yield node, kind, f"{path}.value" if path else "value"
        for key, child in node.items():
            if type(child) is dict or type(child) is list:
                yield from sensitive_elements(child, f"{path}.{key}" if path else key)
    elif type(node) is list:
        for i, child in enumerate(node):
            if type(child) is dict or type(child) is list:
                yield from sensitive_elements(child, f"{path}[{i}]")


# ------------------------------------------------------------------------- search parameters

_WHERE = re.compile(r"\.where\((?:[^()]|\([^()]*\))*\)")
_CAST = re.compile(r"(?:\s+as\s+|\.as\(|\.ofType\()([A-Za-z]+)\)?\s*$")
_TYPE_KINDS = {"Identifier": RESIDENT_ID_KIND, "ContactPoint": PHONE_KIND}


@cache
def param_kinds(res_type: str, code: str) -> frozenset[str]:
    """The kinds of sensitive value a token parameter's index rows may hold, so that a search
    without a system also tries their blind index. Worked out from the element types of the
    parameter's expression (``ServiceRequest.requisition`` is an Identifier), and by name
    (anything mentioning ``identifier`` or ``telecom``) where a path does not resolve; a kind too
    many only adds an alternative to the SQL, a kind too few would miss rows."""
    p = get_param(res_type, code)
    if p is None or p.type != "token" or not p.expression:
        return frozenset()
    kinds: set[str] = set()
    lowered = p.expression.lower()
    if "identifier" in lowered:
        kinds.add(RESIDENT_ID_KIND)
    if "telecom" in lowered or "contactpoint" in lowered:
        kinds.add(PHONE_KIND)
    for alternative in p.expression.split("|"):
        for type_name in _path_types(res_type, alternative):
            if type_name in _TYPE_KINDS:
                kinds.add(_TYPE_KINDS[type_name])
    return frozenset(kinds)


def _path_types(res_type: str, expression: str) -> tuple[str, ...]:
    """The FHIR types an expression such as ``Patient.contact.telecom.where(...)`` or
    ``Composition.relatesTo.target as Identifier`` selects; () when it does not resolve."""
    text = _WHERE.sub("", expression).strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    cast = _CAST.search(text)
    if cast:
        return (cast.group(1),)
    steps = text.split(".")
    if steps[0] != res_type or len(steps) < 2 or any(not s.isidentifier() for s in steps):
        return ()
    type_name, prefix = res_type, ""
    for i, step in enumerate(steps[1:], start=1):
        e = element(type_name, prefix + step) or element(type_name, f"{prefix}{step}[x]")
        if e is None:
            return ()
        if i == len(steps) - 1:
            return e.types
        if element(type_name, f"{e.path}.{steps[i + 1]}") is not None or (
            element(type_name, f"{e.path}.{steps[i + 1]}[x]") is not None
        ):
            prefix = f"{e.path}."  # a backbone element: its children are in the same type
            continue
        if len(e.types) != 1:
            return ()
        type_name, prefix = e.types[0], ""
    return ()
