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
