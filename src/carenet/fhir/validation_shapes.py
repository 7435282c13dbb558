"""The compiled shapes the validator walks: one per type root and per backbone element.

A Shape maps each JSON property name an object may carry (``valueQuantity`` and ``_birthDate``
included) to a Prop that says what the value must be, computed once from
``carenet.fhir.definitions`` and cached, so that the walk in ``carenet.fhir.validation`` does
dictionary lookups, not definition lookups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from carenet.fhir import definitions
from carenet.fhir.definitions.invariants import CHECKS, Check
from carenet.fhir.primitives import PRIMITIVE_CHECKS, check_string

PRIMITIVE, COMPLEX, RESOURCE, XHTML = 0, 1, 2, 3
POST_NOTHING, POST_URL, POST_STRING, POST_MARKDOWN = 0, 1, 2, 3  # Prop.post
_POST = {
    "uri": POST_URL,
    "url": POST_URL,
    "canonical": POST_URL,
    "string": POST_STRING,
    "markdown": POST_MARKDOWN,
}


@dataclass(slots=True)
class Prop:
    """One JSON property name of a shape (``valueQuantity`` is its own Prop)."""

    json_name: str
    elem_name: str  # the FHIR element name, without [x]
    fhir_path: str  # Type.path of the element, for messages ("Patient.contact.name")
    type_code: str
    kind: int
    is_array: bool
    max: int
    shape_key: tuple[str, str] | None
    codes: frozenset[str] | None
    value_set: str | None
    targets: tuple[str, ...]
    choice: bool
    # Precomputed for the walk (see _walk_object):
    suffix: str = ""  # appended to the parent's expression: ".name", ".value.ofType(Quantity)"
    check: Callable[[Any], str | None] = check_string  # the primitive type's lexical check
    post: int = (
        0  # what follows a passed lexical check: POST_NOTHING, POST_URL, POST_STRING, POST_MARKDOWN
    )
    shape_obj: Shape | None = None  # shape(*shape_key), filled in on first use


@dataclass(slots=True)
class Shape:
    """The allowed JSON properties of one object: a type's root or a backbone element."""

    type_name: str
    path: str
    props: dict[str, Prop]
    required: tuple[tuple[str, int, frozenset[str]], ...]  # (fhir path, min, json names + "_")
    choices: dict[str, tuple[str, ...]]  # elem name -> json names of its choice group
    checks: tuple[Check, ...] = ()  # the invariants registered for this object


_INLINE = ("BackboneElement", "Element")


def _cap(code: str) -> str:
    return code[0].upper() + code[1:]


def _kind(code: str) -> int:
    if code == "xhtml":
        return XHTML
    if code == "Resource":
        return RESOURCE
    if definitions.is_primitive_type(code):
        return PRIMITIVE
    return COMPLEX


@lru_cache(maxsize=4096)
def shape(type_name: str, path: str = "") -> Shape:
    """The compiled shape of ``type_name`` (``path`` selects a backbone element inside it)."""
    elems = definitions.element_map(type_name)
    if path and path in elems and elems[path].content_reference:
        # A repeat reached through contentReference (Questionnaire.item.item) does not enforce
        # the minimum cardinalities again: the Java validator accepts Questionnaire-qs1, whose
        # nested items have no linkId, and so do we.
        target = shape(type_name, elems[path].content_reference or "")
        return Shape(target.type_name, target.path, target.props, (), target.choices, target.checks)
    prefix = path + "." if path else ""
    props: dict[str, Prop] = {}
    required: list[tuple[str, int, frozenset[str]]] = []
    choices: dict[str, tuple[str, ...]] = {}
    for e in definitions.elements(type_name):
        if not e.path.startswith(prefix) or "." in e.path[len(prefix) :]:
            continue
        if e.max == 0:
            continue
        name = e.name
        fhir_path = f"{type_name}.{e.path}"
        names: list[str] = []
        if e.content_reference:
            key = (type_name, e.path)
            props[name] = Prop(
                name,
                name,
                fhir_path,
                "BackboneElement",
                COMPLEX,
                e.is_array,
                e.max,
                key,
                None,
                None,
                (),
                False,
                suffix="." + name,
            )
            names.append(name)
        elif e.is_choice:
            base = name[:-3]
            for code in e.types:
                jname = base + _cap(code)
                props[jname] = _prop(type_name, e, jname, base, fhir_path, code, True)
                names.append(jname)
            choices[base] = tuple(names)
            name = base
        else:
            code = e.types[0] if e.types else "string"
            props[name] = _prop(type_name, e, name, name, fhir_path, code, False)
            names.append(name)
        if e.min > 0:
            all_names = frozenset(names) | {"_" + n for n in names}
            required.append((fhir_path.replace("[x]", ""), e.min, all_names))
    checks = tuple(CHECKS.get((type_name, path), ()))
    return Shape(type_name, path, props, tuple(required), choices, checks)


def _prop(
    type_name: str,
    e: definitions.ElementDefinition,
    jname: str,
    ename: str,
    fhir_path: str,
    code: str,
    choice: bool,
) -> Prop:
    kind = _kind(code)
    key: tuple[str, str] | None = None
    if kind == COMPLEX:
        key = (type_name, e.path) if code in _INLINE else (code, "")
    codes = definitions.value_set_codes(e.value_set) if e.value_set else None
    return Prop(
        jname,
        ename,
        fhir_path,
        code,
        kind,
        e.is_array,
        e.max,
        key,
        codes,
        e.value_set,
        e.target_types(code),
        choice,
        suffix=f".{ename}.ofType({code})" if choice else "." + jname,
        check=PRIMITIVE_CHECKS.get(code, check_string),
        post=_POST.get(code, POST_NOTHING),
    )
