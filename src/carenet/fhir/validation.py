"""Structural validation of FHIR R4 JSON resources against the core StructureDefinitions.

Checks element names, JSON shapes, cardinality, choice types, primitive formats, required
bindings, references, the XHTML narrative and the invariants written out in
``carenet.fhir.definitions.invariants`` (each named by its key). Expressions follow the HL7 Java
validator: ``Patient.name[0].given[1]``, ``Observation.value.ofType(Quantity)``,
``Bundle.entry[2].resource/*Patient/p1*/.birthDate``. See docs/fhir-validation.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from carenet.fhir import definitions
from carenet.fhir.definitions.invariants import RESOURCE_CHECKS, ExtensionPlace
from carenet.fhir.outcomes import Issue, OperationOutcomeError
from carenet.fhir.primitives import check_resource_id, check_xhtml
from carenet.fhir.validation_shapes import (
    COMPLEX,
    POST_NOTHING,
    POST_STRING,
    POST_URL,
    PRIMITIVE,
    RESOURCE,
    XHTML,
    Prop,
    Shape,
    shape,
)

__all__ = [
    "COMPLEX",
    "DEFAULT_OPTIONS",
    "PRIMITIVE",
    "RESOURCE",
    "XHTML",
    "Context",
    "Prop",
    "Shape",
    "ValidationOptions",
    "assert_valid",
    "shape",
    "validate_embedded",
    "validate_resource",
]


@dataclass(frozen=True, slots=True)
class ValidationOptions:
    """Policy switches; the defaults are what the CareNet server applies to incoming resources.

    ``unknown_extensions``: what an extension URL that is not a core R4 extension (nor in
    ``extension_domains`` or an example domain) earns. ``relative_canonicals``: what a
    canonical that is neither absolute nor a ``#fragment`` earns. The server warns for both
    (the official R4 examples use ``Questionnaire/gcs`` canonicals and extensions from other
    IGs); the current HL7 Java validator makes both errors (``ValidationOptions.java_defaults()``).
    """

    unknown_extensions: Literal["error", "warning", "ignore"] = "warning"
    extension_domains: tuple[str, ...] = ()
    allow_example_urls: bool = True
    security_checks: bool = False
    html_in_markdown: bool = True
    validate_contained: bool = True
    reject_experimental: bool = False
    relative_canonicals: Literal["error", "warning"] = "warning"

    @classmethod
    def java_defaults(cls, **changes: Any) -> ValidationOptions:
        """The HL7 Java validator's default policy (unresolvable extensions are errors)."""
        return cls(unknown_extensions="error", relative_canonicals="error", **changes)


DEFAULT_OPTIONS = ValidationOptions()


_SCALARS = frozenset({str, int, float, bool})


def _primitive_ok(value: Any, prop: Prop, ctx: Context) -> bool:
    """True when a scalar primitive value certainly has no problem (the walk's fast path).

    False means "look again": ``_walk_value`` then finds and reports the problem.
    """
    if prop.check(value) is not None:
        return False
    codes = prop.codes
    if codes is not None and value not in codes:
        return False
    post = prop.post
    if post == POST_NOTHING:
        return True
    options = ctx.options
    if post == POST_URL:
        if value[0] == "#":
            ctx.local_refs.add(value)
        elif prop.type_code == "canonical" and not _ABSOLUTE.match(value):
            return False
        return options.allow_example_urls or not _is_example_url(value)
    if post == POST_STRING:
        return not options.security_checks or not _looks_like_html(value)
    return options.html_in_markdown or not _looks_like_html(value)


# ----------------------------------------------------------------------------------------------
# the walk


@dataclass(slots=True)
class Context:
    """State of one resource's validation (a contained or entry resource gets its own)."""

    options: ValidationOptions
    issues: list[Issue]
    resource_type: str
    local_refs: set[str] = field(default_factory=set)
    # where the extensions being walked sit: (shape name, element path, element type)
    ext_place: ExtensionPlace = ("Element",)
    is_root: bool = True

    def error(self, code: str, text: str, expr: str) -> None:
        self.issues.append(Issue("error", code, text, (expr,)))

    def warning(self, code: str, text: str, expr: str) -> None:
        self.issues.append(Issue("warning", code, text, (expr,)))


def _json_kind(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def _walk_object(
    obj: dict[str, Any], sh: Shape, expr: str, ctx: Context, owner: Prop | None
) -> None:
    if not obj:
        ctx.error("invalid", "Object must have some content", expr)
        return
    entry_place = ctx.ext_place
    props = sh.props
    choices_seen = 0
    for key, value in obj.items():
        if key[:1] == "_":
            prop = props.get(key[1:])
            if prop is None or prop.kind != PRIMITIVE:
                ctx.error("structure", f"Unrecognized property '{key}'", expr)
                continue
            choices_seen += prop.choice
            _walk_primitive_ext(obj, key, value, prop, expr, ctx)
            continue
        prop = props.get(key)
        if prop is None:
            if key == "resourceType" and not sh.path and definitions.is_resource_type(sh.type_name):
                continue
            ctx.error("structure", f"Unrecognized property '{key}'", expr)
            continue
        choices_seen += prop.choice
        if prop.is_array:
            if type(value) is not list or not value:
                _array_problem(key, value, prop, expr + prop.suffix, ctx)
                continue
            cexpr = expr + prop.suffix
            if 0 < prop.max < len(value):
                ctx.error(
                    "structure",
                    f"{prop.fhir_path}: max allowed = {prop.max}, but found {len(value)}",
                    cexpr,
                )
            if prop.kind == PRIMITIVE:
                ext = obj.get("_" + key)
                for i, item in enumerate(value):
                    if type(item) in _SCALARS and _primitive_ok(item, prop, ctx):
                        continue
                    iexpr = f"{cexpr}[{i}]"
                    if item is None:
                        if not (isinstance(ext, list) and i < len(ext) and ext[i] is not None):
                            ctx.error(
                                "structure",
                                f"The property {key} must not contain null at index {i} unless _{key} has a value there",
                                iexpr,
                            )
                        continue
                    _walk_value(item, prop, iexpr, ctx)
                continue
            place = _place(sh, owner) if prop.type_code == "Extension" else None
            for i, item in enumerate(value):
                if place is not None:
                    ctx.ext_place = place
                iexpr = f"{cexpr}[{i}]"
                if item is None:
                    ctx.error(
                        "structure",
                        f"The property {key} must not contain null at index {i} unless _{key} has a value there",
                        iexpr,
                    )
                    continue
                _walk_value(item, prop, iexpr, ctx)
        elif prop.kind == PRIMITIVE and type(value) in _SCALARS and _primitive_ok(value, prop, ctx):
            continue
        else:
            cexpr = expr + prop.suffix
            if isinstance(value, list):
                ctx.error(
                    "structure",
                    f"The property {key} must be {_article_for(prop)}, not an Array (at {cexpr})",
                    cexpr,
                )
                continue
            if value is None:
                ctx.error(
                    "invalid",
                    f"The property {key} must be {_article_for(prop)}, not a Null (at {cexpr})",
                    cexpr,
                )
                continue
            _walk_value(value, prop, cexpr, ctx)
    keys = obj.keys()
    for fhir_path, minimum, names in sh.required:
        if keys.isdisjoint(names):
            ctx.error(
                "structure", f"{fhir_path}: minimum required = {minimum}, but only found 0", expr
            )
    if choices_seen > 1:
        for base, group in sh.choices.items():
            present = [n for n in group if n in obj or ("_" + n) in obj]
            if len(present) > 1:
                ctx.error(
                    "structure",
                    f"Only one of {', '.join(present)} may be present (choice element {base}[x])",
                    expr,
                )
    if sh.checks:
        ctx.ext_place = entry_place
        for fn in sh.checks:
            fn(obj, expr, owner, ctx)


def _array_problem(key: str, value: Any, prop: Prop, cexpr: str, ctx: Context) -> None:
    if not isinstance(value, list):
        ctx.error(
            "structure",
            f"The property {key} must be a JSON Array, not {_article(value)} (at {cexpr})",
            cexpr,
        )
    else:
        ctx.error(
            "invalid",
            "Array cannot be empty - the property should not be present if it has no values",
            cexpr,
        )


def _place(sh: Shape, owner: Prop | None) -> ExtensionPlace:
    name = f"{sh.type_name}.{sh.path}" if sh.path else sh.type_name
    if owner is None:
        return (name,)
    return (name, owner.fhir_path.replace("[x]", ""), owner.type_code)


def _article(value: Any) -> str:
    kind = _json_kind(value)
    return ("an " if kind[0] in "AO" else "a ") + kind


def _article_for(prop: Prop) -> str:
    return "a primitive value" if prop.kind in (PRIMITIVE, XHTML) else "an Object"


def _walk_value(value: Any, prop: Prop, expr: str, ctx: Context) -> None:
    kind = prop.kind
    if kind == PRIMITIVE:
        if isinstance(value, dict | list) or value is None:
            ctx.error(
                "structure",
                f"The property {prop.json_name} must be a JSON primitive, not {_article(value)}",
                expr,
            )
            return
        problem = prop.check(value)
        if problem:
            ctx.error("invalid", problem, expr)
            return
        if prop.codes is not None and value not in prop.codes:
            ctx.error(
                "code-invalid",
                f"The value provided ('{value}') is not in the value set '{prop.value_set}', and a code is required from this value set",
                expr,
            )
        if prop.type_code in ("uri", "url", "canonical"):
            _check_url(value, prop, expr, ctx)
        elif ctx.options.security_checks and prop.type_code == "string" and _looks_like_html(value):
            ctx.error(
                "invalid",
                "The string value contains text that looks like embedded HTML tags, which are not allowed for security reasons in this context",
                expr,
            )
        elif (
            not ctx.options.html_in_markdown
            and prop.type_code == "markdown"
            and _looks_like_html(value)
        ):
            ctx.error(
                "invalid",
                "The markdown contains content that appears to be an embedded HTML tag",
                expr,
            )
        return
    if kind == COMPLEX:
        if not isinstance(value, dict):
            ctx.error(
                "structure",
                f"The property {prop.json_name} must be an Object, not {_article(value)} (at {expr})",
                expr,
            )
            return
        sh = prop.shape_obj
        if sh is None:
            assert prop.shape_key is not None
            sh = prop.shape_obj = shape(*prop.shape_key)
        _walk_object(value, sh, expr, ctx, prop)
        return
    if kind == RESOURCE:
        contained = prop.json_name == "contained"
        if contained and not ctx.options.validate_contained:
            return
        validate_embedded(value, expr, ctx, contained=contained)
        return
    for problem in check_xhtml(value):
        if problem.startswith("Constraint failed: txt-2"):
            # The R4 examples themselves carry empty narratives; the Java validator lets them by.
            ctx.warning("invariant", problem, expr)
        else:
            ctx.error("invalid", problem, expr)


def _walk_primitive_ext(
    obj: dict[str, Any], key: str, value: Any, prop: Prop, expr: str, ctx: Context
) -> None:
    base = key[1:]
    eexpr = f"{expr}.{prop.elem_name}.ofType({prop.type_code})" if prop.choice else f"{expr}.{base}"
    element_shape = shape("Element")
    if prop.is_array:
        if not isinstance(value, list):
            ctx.error(
                "structure",
                f"The property {key} must be a JSON Array, not {_article(value)}",
                eexpr,
            )
            return
        values = obj.get(base)
        if values is not None and (not isinstance(values, list) or len(values) != len(value)):
            ctx.error("structure", f"The arrays {base} and {key} must have the same length", eexpr)
        for i, item in enumerate(value):
            if item is None:
                if not (isinstance(values, list) and i < len(values) and values[i] is not None):
                    ctx.error(
                        "structure",
                        f"The property {key} must not contain null at index {i} unless {base} has a value there",
                        f"{eexpr}[{i}]",
                    )
                continue
            if not isinstance(item, dict):
                ctx.error(
                    "structure",
                    f"The property {key} must contain Objects, not {_article(item)}",
                    f"{eexpr}[{i}]",
                )
                continue
            _walk_object(item, element_shape, f"{eexpr}[{i}]", ctx, prop)
    else:
        if not isinstance(value, dict):
            ctx.error(
                "structure", f"The property {key} must be an Object, not {_article(value)}", eexpr
            )
            return
        _walk_object(value, element_shape, eexpr, ctx, prop)


_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_EXAMPLE_HOSTS = ("example.org", "example.com", "example.net", "acme.com", "acme.org")


def _check_url(value: str, prop: Prop, expr: str, ctx: Context) -> None:
    if value.startswith("#"):
        ctx.local_refs.add(value)
    elif prop.type_code == "canonical" and not _ABSOLUTE.match(value):
        text = f"Canonical URLs must be absolute URLs if they are not fragment references ({value})"
        if ctx.options.relative_canonicals == "error":
            ctx.error("invalid", text, expr)
        else:
            ctx.warning("invalid", text, expr)
    if not ctx.options.allow_example_urls and _is_example_url(value):
        ctx.error("invalid", f"Example URLs are not allowed in this context ({value})", expr)


def _is_example_url(value: str) -> bool:
    if not value.startswith(("http://", "https://")):
        return False
    host = value.split("/", 3)[2].split(":")[0].lower()
    return any(host == h or host.endswith("." + h) for h in _EXAMPLE_HOSTS)


def _looks_like_html(value: str) -> bool:
    low = value.lower()
    i = low.find("<")
    while i >= 0:
        rest = low[i + 1 : i + 12]
        if rest[:1].isalpha() or rest[:1] == "/":
            return True
        i = low.find("<", i + 1)
    return False


def validate_embedded(
    value: Any, expr: str, ctx: Context, *, contained: bool = False
) -> str | None:
    """Validate a resource inside another (contained, Bundle.entry.resource, Parameters)."""
    if not isinstance(value, dict):
        ctx.error("structure", f"A resource must be a JSON Object, not {_article(value)}", expr)
        return None
    rtype = value.get("resourceType")
    if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
        if rtype is None:
            ctx.error("structure", "Unable to find resourceType property", expr)
        else:
            ctx.error("structure", f"Unknown resource type '{rtype}'", expr)
        return None
    rid = value.get("id")
    rexpr = f"{expr}/*{rtype}/{rid}*/" if isinstance(rid, str) else f"{expr}/*{rtype}/null*/"
    sub = Context(ctx.options, ctx.issues, rtype, is_root=not contained)
    _validate_root(value, rtype, rexpr, sub)
    ctx.local_refs.update(sub.local_refs)
    return rtype


def _validate_root(resource: dict[str, Any], rtype: str, expr: str, ctx: Context) -> None:
    rid = resource.get("id")
    if rid is not None and not isinstance(rid, list | dict):
        problem = check_resource_id(rid)
        if problem:
            ctx.error("invalid", problem, f"{expr}.id")
    _walk_object(resource, shape(rtype), expr, ctx, None)
    for fn in RESOURCE_CHECKS:
        fn(resource, expr, None, ctx)


def validate_resource(
    resource: Any, *, expected_type: str | None = None, options: ValidationOptions = DEFAULT_OPTIONS
) -> list[Issue]:
    """All problems of ``resource`` as an R4 resource (an empty list if it is valid)."""
    if not isinstance(resource, dict):
        return [
            Issue(
                "error",
                "structure",
                f"A resource must be a JSON Object, not {_article(resource)}",
                (),
            )
        ]
    rtype = resource.get("resourceType")
    if rtype is None:
        return [Issue("error", "structure", "Unable to find resourceType property", ())]
    if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
        return [Issue("error", "structure", f"Unknown resource type '{rtype}'", ("resourceType",))]
    if expected_type is not None and rtype != expected_type:
        return [
            Issue(
                "error",
                "invalid",
                f"Resource type is {rtype}, but {expected_type} was expected",
                (rtype,),
            )
        ]
    ctx = Context(options, [], rtype)
    _validate_root(resource, rtype, rtype, ctx)
    return ctx.issues


def assert_valid(
    resource: Any, *, expected_type: str | None = None, options: ValidationOptions = DEFAULT_OPTIONS
) -> None:
    """Raise OperationOutcomeError(400) with all issues if any of them is an error."""
    issues = validate_resource(resource, expected_type=expected_type, options=options)
    if any(i.severity in ("error", "fatal") for i in issues):
        raise OperationOutcomeError(400, issues)
