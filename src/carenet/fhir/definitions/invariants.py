"""The R4 invariants (constraints) CareNet enforces, written out by hand in Python.

Evaluating every constraint's FHIRPath on each resource would be far too slow for the ingest
path, so the ones that matter are here, each in a function whose docstring names its key. A
check receives the JSON object, its FHIRPath expression, the element it was reached through and
the validation context (``carenet.fhir.validation.Context``) and reports through ``ctx.error``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
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


def _list(value: Any) -> list[Any]:
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


_REF_RELATIVE = re.compile(
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
    m = _REF_RELATIVE.match(ref)
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


@check("Bundle")
def bundle_rules(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """bdl-1, bdl-2, bdl-3, bdl-4, bdl-5, bdl-7, bdl-8, bdl-9, bdl-10, bdl-11, bdl-12, links."""
    btype = obj.get("type")
    entries = _list(obj.get("entry"))
    if "total" in obj and btype not in ("searchset", "history"):
        ctx.error(
            "invariant", "Constraint failed: bdl-1: 'total only when a search or history'", expr
        )
    if btype == "document":
        ident = obj.get("identifier")
        if not (isinstance(ident, dict) and "system" in ident and "value" in ident):
            ctx.error(
                "invariant",
                "Constraint failed: bdl-9: 'A document must have an identifier with a system and a value'",
                expr,
            )
        if "timestamp" not in obj:
            ctx.error("invariant", "Constraint failed: bdl-10: 'A document must have a date'", expr)
    first = entries[0].get("resource") if entries and isinstance(entries[0], dict) else None
    if btype == "document" and not (
        isinstance(first, dict) and first.get("resourceType") == "Composition"
    ):
        ctx.error(
            "invariant",
            "Constraint failed: bdl-11: 'A document must have a Composition as the first resource'",
            expr,
        )
    if btype == "message" and not (
        isinstance(first, dict) and first.get("resourceType") == "MessageHeader"
    ):
        ctx.error(
            "invariant",
            "Constraint failed: bdl-12: 'A message must have a MessageHeader as the first resource'",
            expr,
        )
    seen_links: set[str] = set()
    links = _list(obj.get("link"))
    for i, link in enumerate(links):
        rel = link.get("relation") if isinstance(link, dict) else None
        if rel in ("self", "first", "previous", "next", "last"):
            if rel in seen_links:
                ctx.error(
                    "invalid",
                    f"The link relationship type '{rel}' can only occur once",
                    f"{expr}.link[{i}]",
                )
            seen_links.add(rel)
    full_urls: dict[str, list[Any]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        eexpr = f"{expr}.entry[{i}]"
        if "search" in entry and btype != "searchset":
            ctx.error(
                "invariant", "Constraint failed: bdl-2: 'entry.search only when a search'", expr
            )
        if "request" in entry and btype not in ("batch", "transaction", "history"):
            ctx.error(
                "invariant",
                "Constraint failed: bdl-3: 'entry.request mandatory for batch/transaction/history, otherwise prohibited'",
                expr,
            )
        if "request" not in entry and btype in ("batch", "transaction", "history"):
            ctx.error(
                "invariant",
                "Constraint failed: bdl-3: 'entry.request mandatory for batch/transaction/history, otherwise prohibited'",
                expr,
            )
        if "response" in entry and btype not in (
            "batch-response",
            "transaction-response",
            "history",
        ):
            ctx.error(
                "invariant",
                "Constraint failed: bdl-4: 'entry.response mandatory for batch-response/transaction-response/history, otherwise prohibited'",
                expr,
            )
        if "response" not in entry and btype in (
            "batch-response",
            "transaction-response",
            "history",
        ):
            ctx.error(
                "invariant",
                "Constraint failed: bdl-4: 'entry.response mandatory for batch-response/transaction-response/history, otherwise prohibited'",
                expr,
            )
        if "resource" not in entry and "request" not in entry and "response" not in entry:
            ctx.error(
                "invariant",
                "Constraint failed: bdl-5: 'must be a resource unless there's a request or response'",
                eexpr,
            )
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            if "/_history/" in full_url:
                ctx.error(
                    "invariant",
                    "Constraint failed: bdl-8: 'fullUrl cannot be a version specific reference'",
                    eexpr,
                )
            if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", full_url):
                ctx.error(
                    "invalid", f"The fullUrl must be an absolute URL (not '{full_url}')", eexpr
                )
            res = entry.get("resource")
            version = None
            if isinstance(res, dict) and isinstance(res.get("meta"), dict):
                version = res["meta"].get("versionId")
            full_urls.setdefault(full_url, []).append(version)
        elif isinstance(entry.get("resource"), dict) and btype not in (
            "batch-response",
            "transaction-response",
            "searchset",
            "history",
        ):
            relative = list(_relative_references(entry["resource"], f"{eexpr}.resource"))
            if relative:
                ctx.error("required", "Bundle entry missing fullUrl", eexpr)
                for rexpr in relative:
                    ctx.error(
                        "required",
                        "Relative Reference appears inside Bundle whose entry is missing a fullUrl",
                        rexpr,
                    )
    signature = obj.get("signature")
    if (
        isinstance(signature, dict)
        and isinstance(signature.get("data"), str)
        and base64_size(signature["data"]) is None
    ):
        ctx.error("invalid", "The signature data is not valid base64 content", expr)
    if btype != "history":
        for url, versions in full_urls.items():
            if len(versions) > 1 and len(set(versions)) != len(versions):
                ctx.error(
                    "invariant",
                    f"Constraint failed: bdl-7: 'FullUrl must be unique in a bundle, or else entries with the same fullUrl must have different meta.versionId (except in history bundles)' ({url})",
                    expr,
                )


def _relative_references(resource: dict[str, Any], expr: str) -> Iterator[str]:
    """Expressions of the Reference elements with a relative ``Type/id`` reference."""
    from carenet.fhir.validation import shape

    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
        return
    rid = resource.get("id")
    yield from _relative_in(resource, shape(rtype), f"{expr}/*{rtype}/{rid}*/")


def _relative_in(obj: dict[str, Any], sh: Any, expr: str) -> Iterator[str]:
    from carenet.fhir.validation import COMPLEX, shape

    for key, value in obj.items():
        prop = sh.props.get(key)
        if prop is None or prop.kind != COMPLEX or prop.json_name == "contained":
            continue
        cexpr = (
            f"{expr}.{prop.elem_name}.ofType({prop.type_code})" if prop.choice else f"{expr}.{key}"
        )
        items = (
            list(enumerate(value)) if prop.is_array and isinstance(value, list) else [(None, value)]
        )
        for i, item in items:
            if not isinstance(item, dict) or prop.shape_key is None:
                continue
            iexpr = cexpr if i is None else f"{cexpr}[{i}]"
            if prop.type_code == "Reference":
                ref = item.get("reference")
                if isinstance(ref, str) and _REF_RELATIVE.match(ref):
                    yield iexpr
            else:
                yield from _relative_in(item, shape(*prop.shape_key), iexpr)


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
    bases = _list(obj.get("base"))
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
