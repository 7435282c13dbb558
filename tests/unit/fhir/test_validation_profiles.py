"""A StructureDefinition's element paths must exist in its type, in order; eld-11 on bindings."""

from __future__ import annotations

from typing import Any

from carenet.fhir.validation import validate_resource


def profile(*elements: dict[str, Any], sd_type: str = "Patient", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/StructureDefinition/p",
        "name": "P",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": sd_type,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{sd_type}",
        "derivation": "constraint",
        "differential": {"element": list(elements)},
        **fields,
    }


def el(path: str, eid: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": eid or path, "path": path, **fields}


def errors(resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.expression) for i in validate_resource(resource) if i.severity == "error"]


def test_a_differential_in_the_types_order_is_accepted() -> None:
    sd = profile(el("Patient"), el("Patient.identifier", min=1), el("Patient.birthDate", min=1))
    assert errors(sd) == []


def test_an_element_before_one_the_type_puts_earlier_matches_nothing() -> None:
    sd = profile(el("Patient.birthDate", min=1), el("Patient.identifier", min=1))
    assert errors(sd) == [
        ("value", ("StructureDefinition.differential.element[0]",)),
        ("value", ("StructureDefinition",)),
    ]


def test_a_path_that_is_not_in_the_type_matches_nothing() -> None:
    sd = profile(el("Observation.valueBla"), sd_type="Observation")
    assert errors(sd) == [
        ("value", ("StructureDefinition.differential.element[0]",)),
        ("value", ("StructureDefinition",)),
    ]


def test_slices_choice_renames_and_primitive_extensions_are_followed() -> None:
    sd = profile(
        el("Observation.component", slicing={"rules": "open"}),
        el("Observation.component", "Observation.component:sys", sliceName="sys"),
        el("Observation.component.code", "Observation.component:sys.code"),
        el("Observation.component.valueQuantity", "Observation.component:sys.valueQuantity"),
        el(
            "Observation.component.valueQuantity.unit",
            "Observation.component:sys.valueQuantity.unit",
        ),
        el("Observation.component", "Observation.component:dia", sliceName="dia"),
        el("Observation.component.code", "Observation.component:dia.code"),
        sd_type="Observation",
    )
    assert errors(sd) == []
    sd = profile(
        el("Patient.birthDate"),
        el("Patient.birthDate.extension", "Patient.birthDate.extension:time", sliceName="time"),
        el("Patient.link.other"),
    )
    assert errors(sd) == []


def test_a_content_reference_repeat_is_followed() -> None:
    sd = profile(
        el("Questionnaire.item"),
        el("Questionnaire.item.item"),
        el("Questionnaire.item.item.linkId"),
        sd_type="Questionnaire",
    )
    assert errors(sd) == []


def test_a_binding_on_a_type_that_cannot_carry_one_is_an_error() -> None:
    binding = {"strength": "required", "valueSet": "http://example.org/vs"}
    sd = profile(el("Patient.birthDate", type=[{"code": "date"}], binding=binding))
    assert errors(sd) == [
        ("business-rule", ("StructureDefinition.differential.element[0]",)),
    ]
    # the type comes from the base when the differential does not restate it
    assert errors(profile(el("Patient.active", binding=binding))) == [
        ("business-rule", ("StructureDefinition.differential.element[0]",)),
    ]
    assert errors(profile(el("Patient.gender", binding=binding))) == []
    assert errors(profile(el("Patient.maritalStatus", binding=binding))) == []


def test_a_specialization_is_not_checked_against_its_base() -> None:
    sd = profile(el("MyModel"), el("MyModel.thing"), sd_type="MyModel", derivation="specialization")
    sd["kind"] = "logical"
    assert errors(sd) == []
