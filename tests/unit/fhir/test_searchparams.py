"""The R4 search-parameter registry derived from the official definitions."""

from __future__ import annotations

from carenet.fhir import searchparams as sp


def test_every_resource_type_has_the_common_parameters() -> None:
    assert len(sp.resource_types()) == 147
    for rtype in sp.resource_types():
        params = sp.params_for(rtype)
        for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"):
            assert code in params, (rtype, code)


def test_shared_parameter_expression_is_narrowed_to_the_resource_type() -> None:
    p = sp.get_param("Observation", "patient")
    assert p is not None
    assert p.type == "reference"
    assert p.expression == "Observation.subject.where(resolve() is Patient)"
    assert p.targets == ("Patient",)
    assert sp.get_param("Patient", "_lastUpdated").expression == "Patient.meta.lastUpdated"  # type: ignore[union-attr]


def test_composite_components_carry_their_types() -> None:
    p = sp.get_param("Observation", "component-code-value-quantity")
    assert p is not None and p.type == "composite"
    assert [(c.code, c.type, c.expression) for c in p.components] == [
        ("component-code", "token", "code"),
        ("component-value-quantity", "quantity", "value.as(Quantity)"),
    ]


def test_comparators_and_flags_come_from_the_definition() -> None:
    p = sp.get_param("Patient", "birthdate")
    assert p is not None and p.type == "date"
    assert "sa" in p.comparators
    assert p.url == "http://hl7.org/fhir/SearchParameter/individual-birthdate"


def test_unknown_type_or_code_and_system_level() -> None:
    assert sp.params_for("Nope") == {}
    assert sp.get_param("Patient", "nope") is None
    assert sp.get_param(None, "_tag") is not None
    assert sp.get_param(None, "name") is None


def test_r5_additions_are_not_in_the_r4_registry() -> None:
    assert sp.get_param("DeviceDefinition", "classification") is None


def test_split_union_respects_parentheses_and_quotes() -> None:
    assert sp.split_union("(A.b as X) | A.c.where(d='x|y') | A.e") == [
        "(A.b as X)",
        "A.c.where(d='x|y')",
        "A.e",
    ]


def test_patient_compartment() -> None:
    assert sp.patient_compartment()["Observation"] == ("subject", "performer")
