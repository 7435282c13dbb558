"""The Bundle invariants (bdl-*), its link and fullUrl rules, and its signature.

Registered in ``carenet.fhir.definitions.invariants.CHECKS`` like every other check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from carenet.fhir import definitions
from carenet.fhir.definitions.invariants import REF_RELATIVE, check, list_of
from carenet.fhir.primitives import base64_size
from carenet.fhir.signature import check_bundle_signature

if TYPE_CHECKING:
    from carenet.fhir.validation import Context, Prop


@check("Bundle")
def bundle_rules(obj: dict[str, Any], expr: str, owner: Prop | None, ctx: Context) -> None:
    """bdl-1, bdl-2, bdl-3, bdl-4, bdl-5, bdl-7, bdl-8, bdl-9, bdl-10, bdl-11, bdl-12, links."""
    btype = obj.get("type")
    entries = list_of(obj.get("entry"))
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
    links = list_of(obj.get("link"))
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
    _signature(obj, expr, ctx)
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
                if isinstance(ref, str) and REF_RELATIVE.match(ref):
                    yield iexpr
            else:
                yield from _relative_in(item, shape(*prop.shape_key), iexpr)


def _signature(obj: dict[str, Any], expr: str, ctx: Context) -> None:
    """Bundle.signature: a JWS is verified (carenet.fhir.signature); other data must be base64."""
    findings = check_bundle_signature(obj)
    for f in findings:
        if f.severity == "error":
            ctx.error(f.code, f.text, expr)
        elif f.severity == "warning":
            ctx.warning(f.code, f.text, expr)
    signature = obj.get("signature")
    if (
        not findings
        and isinstance(signature, dict)
        and isinstance(signature.get("data"), str)
        and base64_size(signature["data"]) is None
    ):
        ctx.error("invalid", "The signature data is not valid base64 content", expr)
