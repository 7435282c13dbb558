"""The R4 invariants (constraints) CareNet enforces, written out by hand in Python.

Evaluating every constraint's FHIRPath on each resource would be far too slow for the ingest
path, so the ones that matter are here, each in a function whose docstring names its key. A
check receives the JSON object, its FHIRPath expression, the element it was reached through and
the validation context (``carenet.fhir.validation.Context``) and reports through ``ctx.error``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from carenet.fhir import definitions
from carenet.fhir.primitives import base64_size

if TYPE_CHECKING:
    from carenet.fhir.validation import Context, Prop

ExtensionPlace = tuple[str, ...]
Check = Callable[[dict[str, Any], str, "Prop | None", "Context"], None]
CHECKS: dict[tuple[str, str], list[Check]] = {}
RESOURCE_CHECKS: list[Check] = []


def check(type_name: str, path: str = "") -> Callable[[Check], Check]:
    """Register a check for objects of ``type_name`` (at backbone ``path``; '' for its root)."""

    def register(fn: Check) -> Check:
        CHECKS.setdefault((type_name, path), []).append(fn)
        return fn

    return register


def resource_check(fn: Check) -> Check:
    """Register a check that runs on every resource (the DomainResource/Resource invariants)."""
    RESOURCE_CHECKS.append(fn)
    return fn


def list_of(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


# ---------------------------------------------------------------------------- datatypes


@check("Period")
def per_1(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """per-1: If present, start SHALL have a lower value than end.

    FHIRPath semantics: when the two values have different precisions and agree as far as the
    shorter one goes (``2023-06-21`` and ``2023-06-21T06:20:00Z``) the comparison is empty,
    so the constraint fails, as the Java validator reports.
    """
    start, end = obj.get("start"), obj.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return
    if _before_or_equal(start, end) is not True:
        ctx.error(
            "invariant",
            "Constraint failed: per-1: 'If present, start SHALL have a lower value than end'",
            expr,
        )


def _before_or_equal(start: str, end: str) -> bool | None:
    """start <= end as FHIRPath compares dateTimes (None when the answer is empty)."""
    if len(start) > 10 and len(end) > 10:
        from datetime import datetime

        try:
            a = datetime.fromisoformat(start.replace("Z", "+00:00"))
            b = datetime.fromisoformat(end.replace("Z", "+00:00"))
            return a <= b
        except (ValueError, TypeError):
            return None
    n = min(len(start), len(end), 10)
    if start[:n] != end[:n]:
        return start[:n] < end[:n]
    return True if len(start) == len(end) else None


@check("Extension")
def ext_1(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """ext-1: Must have either extensions or value[x], not both; plus the extension's URL rules."""
    has_value = any(k.startswith(("value", "_value")) for k in obj)
    if has_value and "extension" in obj:
        ctx.error(
            "invariant",
            "Constraint failed: ext-1: 'Must have either extensions or value[x], not both'",
            expr,
        )
    url = obj.get("url")
    if not isinstance(url, str):
        if "url" not in obj:
            ctx.error(
                "invalid",
                "Extension.url is required in order to identify, use and validate the extension",
                expr,
            )
        return
    place = ctx.ext_place
    if place and place[0] == "Extension" and not url.startswith(("http:", "https:", "urn:")):
        return  # a complex extension's part (relative url such as "day")
    if "|" in url:
        ctx.error("invalid", "The extension URL must not contain a version", f"{expr}[url='{url}']")
        ctx.error(
            "value",
            f"Value is '{url}' but an extension URL must not carry a version",
            f"{expr}.url",
        )
        return
    definition = definitions.extension_definition(url)
    if definition is None:
        _unknown_extension(url, expr, ctx)
        return
    contexts = definition["ctx"]
    if contexts and not any(_context_matches(c, place) for c in contexts):
        parent = expr.rsplit(".", 1)[0]
        ctx.error(
            "structure",
            f"The extension {url} is not allowed to be used at this point (this element is [{', '.join(place)}]; allowed = {', '.join(contexts)})",
            parent,
        )


_QUANTITY_PROFILES = frozenset(
    {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)
_TOLERATED_EXTENSION_PREFIXES = (
    "http://hl7.org/fhir/tools/StructureDefinition/",
    "http://hl7.org/fhir/StructureDefinition/",  # newer core extensions used in R4 content
)
_XVER = re.compile(r"^http://hl7\.org/fhir/[0-9.]+/StructureDefinition/extension-")


def _context_matches(context: str, place: ExtensionPlace) -> bool:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]*", context):
        return True  # FHIRPath or canonical contexts: not judged here
    if context in ("Element", "Base", "BackboneElement"):
        return True
    if context in place:
        return True
    if (
        context in ("Resource", "DomainResource")
        and len(place) == 1
        and definitions.is_resource_type(place[0])
    ):
        return True
    if context == "Quantity" and any(p in _QUANTITY_PROFILES for p in place):
        return True
    # A context naming a resource element also matches where that element's type is used.
    return any(p.endswith("." + context) for p in place)


def _unknown_extension(url: str, expr: str, ctx: Context) -> None:
    policy = ctx.options.unknown_extensions
    if policy == "ignore":
        return
    if any(url.startswith(d) for d in ctx.options.extension_domains):
        return
    if url.startswith(_TOLERATED_EXTENSION_PREFIXES) or _XVER.match(url):
        return
    host = (
        url.split("/", 3)[2].split(":")[0].lower()
        if url.startswith(("http://", "https://"))
        else ""
    )
    if ctx.options.allow_example_urls and (
        host in ("example.org", "example.com", "acme.com") or host.endswith(".example.org")
    ):
        return
    text = f"The extension {url} could not be found so is not allowed here"
    if policy == "error":
        ctx.error("structure", text, expr)
    else:
        ctx.warning("structure", text, expr)


@check("Attachment")
def att_1(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """att-1: If the Attachment has data, it SHALL have a contentType; and size matches data."""
    data = obj.get("data")
    if not isinstance(data, str):
        return
    if "contentType" not in obj:
        ctx.error(
            "invariant",
            "Constraint failed: att-1: 'If the Attachment has data, it SHALL have a contentType'",
            expr,
        )
    size = base64_size(data)
    if size is None:
        ctx.error("structure", "The base64 content in the data element is not valid base64", expr)
        return
    stated = obj.get("size")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated != size:
        ctx.error(
            "structure",
            f"Stated Attachment Size {stated} does not match actual attachment size {size}",
            expr,
        )


@check("Quantity")
@check("SimpleQuantity")
@check("Age")
@check("Duration")
@check("Distance")
@check("Count")
@check("MoneyQuantity")
def qty_3(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """qty-3: If a code for the unit is present, the system SHALL also be present."""
    if "code" in obj and "system" not in obj:
        ctx.error(
            "invariant",
            "Constraint failed: qty-3: 'If a code for the unit is present, the system SHALL also be present'",
            expr,
        )


REF_RELATIVE = re.compile(
    r"^([A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/([A-Za-z0-9\-\.]{1,64}))?$"
)
_REF_ABSOLUTE_TAIL = re.compile(
    r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-\.]{1,64})(/_history/[A-Za-z0-9\-\.]{1,64})?$"
)


@check("Reference")
def ref_format(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """ref-1 and Reference.reference format: Type/id[/_history/v], absolute URL, #frag, urn."""
    ref = obj.get("reference")
    if not isinstance(ref, str) or not ref:
        return
    if ref.startswith("#"):
        ctx.local_refs.add(ref)
        return
    rtype: str | None = None
    m = REF_RELATIVE.match(ref)
    if m:
        rtype = m.group(1)
        if not definitions.is_resource_type(rtype):
            ctx.error(
                "invalid",
                f"Relative URLs must be of the format [ResourceName]/[id]. Encountered {ref}",
                expr,
            )
            return
    elif ref.startswith(("urn:uuid:", "urn:oid:")):
        return
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", ref):
        tail = _REF_ABSOLUTE_TAIL.search(ref)
        if tail and definitions.is_resource_type(tail.group(1)):
            rtype = tail.group(1)
    else:
        ctx.error(
            "invalid",
            f"Relative URLs must be of the format [ResourceName]/[id]. Encountered {ref}",
            expr,
        )
        return
    if rtype is None or owner is None or not owner.targets:
        return
    targets = owner.targets
    if "Resource" in targets or rtype in targets:
        return
    # A warning, not an error: several official R4 examples reference types outside the
    # element's targetProfile list (DeviceMetric.parent -> DeviceDefinition, ...).
    ctx.warning(
        "structure",
        f"The type '{rtype}' implied by the reference URL {ref} is not a valid Target for this element (must be one of {list(targets)})",
        f"{expr}.reference",
    )


# ---------------------------------------------------------------------------- resources


@resource_check
def dom_contained(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """dom-2, dom-3, dom-4, dom-5: rules of contained resources."""
    contained = obj.get("contained")
    if not isinstance(contained, list) or not ctx.is_root or not ctx.options.validate_contained:
        return
    for i, res in enumerate(contained):
        if not isinstance(res, dict):
            continue
        rtype, rid = res.get("resourceType"), res.get("id")
        cexpr = f"{expr}.contained[{i}]"
        if "contained" in res:
            ctx.error(
                "invariant",
                "Constraint failed: dom-2: 'If the resource is contained in another resource, it SHALL NOT contain nested Resources'",
                cexpr,
            )
        meta = res.get("meta")
        if isinstance(meta, dict):
            if "versionId" in meta or "lastUpdated" in meta:
                ctx.error(
                    "invariant",
                    "Constraint failed: dom-4: 'If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated'",
                    cexpr,
                )
            if "security" in meta:
                ctx.error(
                    "invariant",
                    "Constraint failed: dom-5: 'If a resource is contained in another resource, it SHALL NOT have a security label'",
                    cexpr,
                )
        if not isinstance(rid, str):
            continue
        if ("#" + rid) in ctx.local_refs or _refers_to_container(res):
            continue
        ctx.error(
            "invalid",
            f"The contained resource '{rid}' is not referenced to from elsewhere in the containing resource nor does it refer to the containing resource (dom-3)",
            cexpr,
        )
        del rtype


def _refers_to_container(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_refers_to_container(v) for v in value.values())
    if isinstance(value, list):
        return any(_refers_to_container(v) for v in value)
    return value == "#"


@resource_check
def experimental_content(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """Policy (not an R4 invariant): refuse experimental=true when the options say so."""
    if ctx.options.reject_experimental and obj.get("experimental") is True:
        ctx.error("business-rule", "Experimental content is not allowed in this context", expr)


@check("RiskAssessment", "prediction")
def ras_2(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """ras-2: probability as a decimal must be <= 100; ras-1 must be low <= high in a range."""
    p = _num(obj.get("probabilityDecimal"))
    if p is not None and p > 100:
        ctx.error("invariant", "Constraint failed: ras-2: 'Must be <= 100'", expr)
    rng = obj.get("probabilityRange")
    if isinstance(rng, dict):
        for end in ("low", "high"):
            q = rng.get(end)
            if isinstance(q, dict):
                v = _num(q.get("value"))
                if v is not None and v > 100:
                    ctx.error("invariant", "Constraint failed: ras-2: 'Must be <= 100'", expr)


@check("Parameters", "parameter")
def inv_1_parameters(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """inv-1 (Parameters): a parameter must have one and only one of (value, resource, part)."""
    has_value = any(k.startswith(("value", "_value")) for k in obj)
    count = has_value + ("resource" in obj) + ("part" in obj)
    if count > 1:
        ctx.error(
            "invariant",
            "Constraint failed: inv-1: 'A parameter must have one and only one of (value, resource, part)'",
            expr,
        )


def _walk_items(items: Any, out: list[str]) -> None:
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                if isinstance(item.get("linkId"), str):
                    out.append(item["linkId"])
                _walk_items(item.get("item"), out)


@check("Questionnaire")
def que_2(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """que-2: The link ids for groups and questions must be unique within the questionnaire."""
    ids: list[str] = []
    _walk_items(obj.get("item"), ids)
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        ctx.error(
            "invariant",
            f"Constraint failed: que-2: 'The link ids for groups and questions must be unique within the questionnaire' ({', '.join(dup)})",
            expr,
        )


@check("Questionnaire", "item")
def que_item(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """que-12, que-6, que-9, que-4, que-3 on one Questionnaire.item."""
    enable = obj.get("enableWhen")
    if isinstance(enable, list) and len(enable) > 1 and "enableBehavior" not in obj:
        ctx.error(
            "invariant",
            "Constraint failed: que-12: 'If there are more than one enableWhen, enableBehavior must be specified'",
            expr,
        )
    item_type = obj.get("type")
    if item_type == "display":
        if "required" in obj or "repeats" in obj:
            ctx.error(
                "invariant",
                "Constraint failed: que-6: 'Required and repeat aren't permitted for display items'",
                expr,
            )
        if "readOnly" in obj:
            ctx.error(
                "invariant",
                "Constraint failed: que-9: 'Read-only can't be specified for \"display\" items'",
                expr,
            )
        if "code" in obj:
            ctx.error(
                "invariant",
                "Constraint failed: que-3: 'Display items cannot have a \"code\" asserted'",
                expr,
            )
    if "answerOption" in obj and "answerValueSet" in obj:
        ctx.error(
            "invariant",
            "Constraint failed: que-4: 'A question cannot have both answerOption and answerValueSet'",
            expr,
        )


# The checks of the Bundle and of the conformance resources live in their own modules; importing
# them here registers them in CHECKS for whoever imports this module.
from carenet.fhir.definitions import invariants_bundle, invariants_conformance  # noqa: E402

__all__ = [
    "CHECKS",
    "RESOURCE_CHECKS",
    "Check",
    "ExtensionPlace",
    "check",
    "invariants_bundle",
    "invariants_conformance",
    "resource_check",
]
