"""Rules of the conformance resources: CapabilityStatement, SearchParameter, StructureDefinition.

Registered in ``carenet.fhir.definitions.invariants.CHECKS`` like every other check.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from carenet.fhir import definitions
from carenet.fhir.definitions.invariants import check, list_of

if TYPE_CHECKING:
    from carenet.fhir.validation import Context, Prop


@check("CapabilityStatement", "rest.resource.searchParam")
def capability_search_param(
    obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context
) -> None:
    """A searchParam that cites a core SearchParameter must have that parameter's type."""
    definition, sp_type = obj.get("definition"), obj.get("type")
    if not isinstance(definition, str) or not isinstance(sp_type, str):
        return
    sp = definitions.search_parameter(definition.split("|", 1)[0])
    if sp is None or not sp.get("type") or sp["type"] == sp_type:
        return
    text = f"Type mismatch - SearchParameter '{definition}' type is {sp['type']}, but type here is {sp_type}"
    if sp["type"] in _TEXTUAL_SEARCH_TYPES and sp_type in _TEXTUAL_SEARCH_TYPES:
        # string/token/uri/reference are confused in the official examples themselves.
        ctx.warning("invalid", text, expr)
    else:
        ctx.error("invalid", text, expr)


_TEXTUAL_SEARCH_TYPES = frozenset({"string", "token", "uri", "reference"})


@check("SearchParameter")
def search_parameter_rules(
    obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context
) -> None:
    """Composite parameters need two or more components; derivedFrom must agree in type/base."""
    if obj.get("type") == "composite":
        comps = obj.get("component")
        if not isinstance(comps, list) or len(comps) < 2:
            ctx.error(
                "business-rule",
                "When the SearchParameter has a type of 'composite', then the SearchParameter must define two or more components",
                expr,
            )
    derived = obj.get("derivedFrom")
    if not isinstance(derived, str):
        return
    parent = definitions.search_parameter(derived.split("|", 1)[0])
    if parent is None:
        return
    if obj.get("type") and parent.get("type") and obj["type"] != parent["type"]:
        ctx.error(
            "business-rule",
            f"The type {obj['type']} is different to the type {derived} in the derivedFrom SearchParameter",
            expr,
        )
    bases = list_of(obj.get("base"))
    for base in bases:
        if (
            isinstance(base, str)
            and base not in parent.get("base", [])
            and "Resource" not in parent.get("base", [])
        ):
            ctx.error(
                "business-rule",
                f"The resource type {base} is not listed as a base in the SearchParameter this is derived from ({derived})",
                expr,
            )
    expression = obj.get("expression")
    if isinstance(expression, str) and bases:
        for name in re.findall(r"(?:^|[|(\s])\s*([A-Z][A-Za-z]+)\.", expression):
            if (
                definitions.is_resource_type(name)
                and name not in bases
                and not {"Resource", "DomainResource"} & set(bases)
            ):
                ctx.error(
                    "invalid",
                    f"Error in search expression '{expression}': The name '{name}' is not valid for any of the possible types: {bases}",
                    f"{expr}.expression",
                )
                break


# ---------------------------------------------------------------------------- profiles

# eld-11 (R4 lists code, Coding, CodeableConcept, Quantity, string, uri; the Java validator adds
# CodeableReference and the types that declare "can-bind"): the Quantity profiles and the
# uri/string specialisations are accepted too, so only a binding that can never apply fails.
_BINDABLE = frozenset(
    "code Coding CodeableConcept CodeableReference Quantity SimpleQuantity MoneyQuantity Age "
    "Count Distance Duration string markdown uri url canonical".split()
)
_INLINE = frozenset({"BackboneElement", "Element"})
# The children a primitive element may have in a profile (Patient.birthDate.extension:x).
_PRIMITIVE_CHILDREN = {"id": (1, "string"), "extension": (2, "Extension"), "value": (3, "")}
Key = tuple[tuple[int, int], ...]


@check("StructureDefinition")
def sd_elements(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """A profile's element paths exist in its type and keep its order; eld-11 on bindings.

    What the Java validator finds by generating the snapshot, found without generating it: a
    differential element whose path is not in the constrained type (``Observation.valueBla``),
    or that comes after an element the type puts later (a snapshot generator walks the base
    in order and never goes back), matches nothing. Slices (``:name`` in ids), choice
    renames (``valueQuantity``), contentReference repeats and the children of primitive
    elements are followed.
    """
    sd_type = obj.get("type")
    is_profile = (
        obj.get("derivation") == "constraint"
        and isinstance(sd_type, str)
        and bool(definitions.elements(sd_type))
    )
    for part in ("differential", "snapshot"):
        container = obj.get(part)
        elems = container.get("element") if isinstance(container, dict) else None
        if not isinstance(elems, list):
            continue
        pexpr = f"{expr}.{part}.element"
        keys: list[tuple[int, Key | None, tuple[str, ...]]] = []
        if is_profile:
            assert isinstance(sd_type, str)
            keys = _resolve_elements(sd_type, elems)
        resolved_types = {i: types for i, _, types in keys}
        for i, el in enumerate(elems):
            if isinstance(el, dict) and "binding" in el:
                _eld_11(el, resolved_types.get(i, ()), f"{pexpr}[{i}]", ctx)
        if not is_profile:
            continue
        unmatched = [i for i, key, _ in keys if key is None]
        if part == "differential":
            unmatched = sorted(unmatched + _out_of_order(keys))
        for i in unmatched:
            ctx.error(
                "value",
                f"No match found for {elems[i].get('path')} in the generated snapshot: check that the path and definitions are legal in the {part} (including order)",
                f"{pexpr}[{i}]",
            )
        if unmatched:
            ids = ", ".join(str(elems[i].get("id", elems[i].get("path"))) for i in unmatched)
            ctx.error(
                "value",
                f"The profile {obj.get('url')} has {len(unmatched)} element(s) in the {part} (id: {ids}) that don't have a matching element in the snapshot: check that the path and definitions are legal in the {part} (including order)",
                expr,
            )


def _eld_11(el: dict[str, Any], resolved: tuple[str, ...], expr: str, ctx: Context) -> None:
    declared = tuple(
        t["code"] for t in list_of(el.get("type")) if isinstance(t, dict) and "code" in t
    )
    types = declared or resolved
    if not types or not all(isinstance(t, str) and definitions.is_known_type(t) for t in types):
        return  # logical-model and FHIRPath system types are not judged here
    if not _BINDABLE.intersection(types):
        ctx.error(
            "business-rule",
            f"This element has a Binding but the types [{', '.join(types)}] do not make this kind of constraint relevant",
            expr,
        )


def _resolve_elements(
    sd_type: str, elems: list[Any]
) -> list[tuple[int, Key | None, tuple[str, ...]]]:
    """(index, order key or None if the path is not in the type, element types) per element."""
    out: list[tuple[int, Key | None, tuple[str, ...]]] = []
    first_seen: dict[str, int] = {}
    for i, el in enumerate(elems):
        if not isinstance(el, dict) or not isinstance(el.get("path"), str):
            continue
        segments = el["path"].split(".")
        if segments[0] != sd_type:
            out.append((i, None, ()))
            continue
        labels = _slice_labels(el, len(segments))
        found = _resolve(sd_type, "", segments[1:])
        if found is None:
            out.append((i, None, ()))
            continue
        steps, types = found
        key: list[tuple[int, int]] = []
        for n, (position, rename) in enumerate(steps):
            label = ".".join(segments[: n + 2]) + ":" + (labels[n + 1] or "") + "/" + rename
            rank = 0
            if labels[n + 1] or rename:
                rank = first_seen.setdefault(label, i) + 1
            key.append((position, rank))
        out.append((i, tuple(key), types))
    return out


def _slice_labels(el: dict[str, Any], count: int) -> list[str | None]:
    """The slice name of each path segment, from the element id (``Patient.identifier:a.system``)."""
    labels: list[str | None] = [None] * count
    eid = el.get("id")
    parts = eid.split(".") if isinstance(eid, str) else []
    if len(parts) == count:
        for n, part in enumerate(parts):
            labels[n] = part.partition(":")[2] or None
    elif isinstance(el.get("sliceName"), str):
        labels[-1] = el["sliceName"]
    return labels


def _resolve(
    type_name: str, prefix: str, segments: list[str]
) -> tuple[list[tuple[int, str]], tuple[str, ...]] | None:
    """Follow ``segments`` through ``type_name`` from backbone ``prefix``.

    Returns per segment (snapshot position, choice rename or ""), and the last element's types.
    """
    if not segments:
        return [], (type_name,)
    seg, rest = segments[0], segments[1:]
    if definitions.is_primitive_type(type_name):
        child = _PRIMITIVE_CHILDREN.get(seg)
        if child is None:
            return None
        position, child_type = child
        if not child_type:
            return ([(position, "")], ()) if not rest else None
        return _continue(position, "", (child_type,), child_type, "", rest)
    emap = definitions.element_map(type_name)
    e = emap.get(prefix + seg)
    rename = ""
    types: tuple[str, ...]
    if e is None:
        e, narrowed = _choice_rename(emap, prefix, seg)
        if e is None:
            return None
        rename, types = seg, (narrowed,)
    else:
        types = e.types
    if e.content_reference:
        target = emap.get(e.content_reference)
        if target is None:
            return None
        return _continue(e.order, rename, target.types, type_name, e.content_reference + ".", rest)
    if len(types) == 1 and types[0] in _INLINE:
        return _continue(e.order, rename, types, type_name, e.path + ".", rest)
    if not rest:
        return [(e.order, rename)], types
    for t in types:  # a choice's children: any of its types may have them
        found = _continue(e.order, rename, types, t, "", rest)
        if found is not None:
            return found
    return None


def _continue(
    position: int,
    rename: str,
    types: tuple[str, ...],
    type_name: str,
    prefix: str,
    rest: list[str],
) -> tuple[list[tuple[int, str]], tuple[str, ...]] | None:
    if not rest:
        return [(position, rename)], types
    if not definitions.is_primitive_type(type_name) and not definitions.elements(type_name):
        return None
    found = _resolve(type_name, prefix, rest)
    if found is None:
        return None
    return [(position, rename), *found[0]], found[1]


def _choice_rename(
    emap: dict[str, definitions.ElementDefinition], prefix: str, seg: str
) -> tuple[definitions.ElementDefinition | None, str]:
    """``valueQuantity`` -> the element ``value[x]`` and the type ``Quantity``."""
    for code_start in range(1, len(seg)):
        if not seg[code_start].isupper():
            continue
        e = emap.get(prefix + seg[:code_start] + "[x]")
        if e is None:
            continue
        suffix = seg[code_start:]
        for t in e.types:
            if t[0].upper() + t[1:] == suffix:
                return e, t
    return None, ""


def _out_of_order(keys: list[tuple[int, Key | None, tuple[str, ...]]]) -> list[int]:
    """Differential elements a snapshot generator, walking the base in order, never reaches.

    It keeps a cursor in the differential: at each base element it takes the matching
    differential elements at or after the cursor and moves the cursor past them. Elements
    before the cursor when their base element comes up are left unmatched.
    """
    ordered = sorted((key, i) for i, key, _ in keys if key is not None)
    missed: list[int] = []
    cursor = 0
    n = 0
    while n < len(ordered):
        key = ordered[n][0]
        group = []
        while n < len(ordered) and ordered[n][0] == key:
            group.append(ordered[n][1])
            n += 1
        matched = [i for i in group if i >= cursor]
        missed.extend(i for i in group if i < cursor)
        if matched:
            cursor = max(matched) + 1
    return missed
