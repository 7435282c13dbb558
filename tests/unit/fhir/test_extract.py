"""Hand-compiled FHIRPath accessors for search expressions, and the fhirpathpy fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carenet.fhir import extract
from carenet.fhir.searchparams import params_for, resource_types, split_union

OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "subject": {"reference": "Patient/p1"},
    "performer": [
        {"reference": "Practitioner/d1"},
        {"reference": "http://x.org/fhir/Organization/o1"},
    ],
    "valueQuantity": {"value": 5.4, "unit": "mg"},
    "effectivePeriod": {"start": "2020"},
    "component": [{"code": {"text": "a"}, "valueString": "s"}],
}


def test_choice_types_resolve_to_their_typed_keys() -> None:
    assert extract.evaluate(OBS, "(Observation.value as Quantity)") == [
        {"value": 5.4, "unit": "mg"}
    ]
    assert extract.evaluate(OBS, "Observation.value.as(Quantity)") == [{"value": 5.4, "unit": "mg"}]
    assert extract.evaluate(OBS, "(Observation.value as CodeableConcept)") == []
    assert extract.evaluate(OBS, "Observation.effective") == [{"start": "2020"}]
    assert extract.evaluate(OBS, "Observation.component.value") == ["s"]


def test_where_resolve_is_filters_by_reference_type() -> None:
    assert extract.evaluate(OBS, "Observation.subject.where(resolve() is Patient)") == [
        {"reference": "Patient/p1"}
    ]
    assert extract.evaluate(OBS, "Observation.subject.where(resolve() is Group)") == []
    assert extract.evaluate(OBS, "Observation.performer.where(resolve() is Organization)") == [
        {"reference": "http://x.org/fhir/Organization/o1"}
    ]


def test_where_equals_extension_exists_and_index() -> None:
    pat = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "e"}],
        "extension": [{"url": "u1", "valueString": "v1"}, {"url": "u2", "valueString": "v2"}],
        "deceasedBoolean": False,
    }
    assert extract.evaluate(pat, "Patient.telecom.where(system='email')") == [
        {"system": "email", "value": "e"}
    ]
    assert extract.evaluate(pat, "Patient.extension('u2').value") == ["v2"]
    assert extract.evaluate(pat, "Patient.telecom.exists()") == [True]
    assert extract.evaluate(pat, "Patient.link.exists()") == [False]
    assert extract.evaluate(pat, "Patient.telecom[1].value") == ["e"]
    assert extract.evaluate(pat, "Patient.deceased.exists() and Patient.deceased != false") == [
        False
    ]
    assert extract.evaluate(
        {**pat, "deceasedDateTime": "2020", "deceasedBoolean": None},
        "Patient.deceased.exists() and Patient.deceased != false",
    ) == [True]


def test_parenthesised_cast_then_path() -> None:
    obs = {"resourceType": "Observation", "valueCodeableConcept": {"text": "neg"}}
    assert extract.evaluate(obs, "(Observation.value as CodeableConcept).text") == ["neg"]


def test_union_and_unsupported_expression_falls_back_to_fhirpathpy() -> None:
    assert extract.evaluate(OBS, "Observation.subject | Observation.performer[0]") == [
        {"reference": "Patient/p1"},
        {"reference": "Practitioner/d1"},
    ]
    # count() is outside the compiled subset.
    assert extract.evaluate(OBS, "Observation.performer.count()") == [2]


def test_every_r4_expression_compiles_without_error() -> None:
    for rtype in resource_types():
        for p in params_for(rtype).values():
            if p.expression and p.type != "composite":
                fn = extract.compile_expression(p.expression, rtype)
                assert fn({"resourceType": rtype}) in ([], [False]), (rtype, p.code)


@pytest.mark.parametrize("expr", ["Observation.where(", "Observation..code"])
def test_broken_expressions_extract_nothing(expr: str) -> None:
    assert extract.evaluate(OBS, expr) == []


def test_root_elements_name_the_top_level_keys_an_expression_reads() -> None:
    subject = extract.root_elements(
        "Observation.subject.where(resolve() is Patient)", "Observation"
    )
    assert subject is not None and "subject" in subject and "code" not in subject
    both = extract.root_elements("Observation.code | Observation.component.code", "Observation")
    assert both is not None and {"code", "component"} <= both and "subject" not in both
    choice = extract.root_elements("(Observation.value as Quantity)", "Observation")
    assert choice is not None and "valueQuantity" in choice
    # exists() yields false on nothing; the root itself reads everything; fallbacks are opaque.
    assert extract.root_elements("Patient.link.exists()", "Patient") is None
    assert extract.root_elements("Observation", "Observation") is None
    assert extract.root_elements("Observation.performer.count()", "Observation") is None
    assert extract.root_elements("value.as(Quantity)") == {"valueQuantity"}


EXAMPLES = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fhir-examples"
).resolve() / "r4-spec-examples"


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"shared test data not found at {EXAMPLES}")
def test_an_expression_whose_root_elements_are_absent_yields_nothing() -> None:
    """What lets the indexer skip a parameter without running it: checked for every search
    parameter (and composite component) on every official R4 example."""
    checked = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        rtype = resource.get("resourceType")
        if rtype not in resource_types():
            continue
        for p in params_for(rtype).values():
            if not p.expression:
                continue
            pairs: list[tuple[str, str | None, dict[str, Any]]] = [(p.expression, rtype, resource)]
            if p.type == "composite":
                elements = extract.compile_expression(p.expression, rtype)(resource)
                pairs += [
                    (c.expression, None, e)
                    for e in elements
                    if isinstance(e, dict)
                    for c in p.components
                ]
            for expression, root, node in pairs:
                reads = extract.root_elements(expression, root)
                for stripped in (node, {k: v for k, v in node.items() if k not in (reads or ())}):
                    if reads is not None and stripped.keys().isdisjoint(reads):
                        value = extract.compile_expression(expression, root)(stripped)
                        assert value == [], (path.name, p.code, expression)
                        checked += 1
    assert checked > 10000


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"shared test data not found at {EXAMPLES}")
def test_specialised_programs_agree_with_the_generic_step_loop() -> None:
    compared = 0
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        rtype = resource.get("resourceType")
        if rtype not in resource_types():
            continue
        for p in params_for(rtype).values():
            if not p.expression or extract._DECEASED_RE.match(p.expression.strip()):
                continue
            try:
                programs = [extract._compile_path(x, rtype) for x in split_union(p.expression)]
            except extract._Unsupported:
                continue
            generic = [v for ops in programs for v in extract._run([resource], ops)]
            assert extract.compile_expression(p.expression, rtype)(resource) == generic
            compared += 1
    assert compared > 10000
