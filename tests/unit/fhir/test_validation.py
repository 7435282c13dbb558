"""Unit tests of the R4 structural validator, one rule at a time, at its boundary values."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from carenet.fhir.definitions import is_resource_type, resource_types
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.validation import ValidationOptions, assert_valid, validate_resource

DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Ok</p></div>'


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", **fields}


def errors(resource: Any, **kw: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (i.code, i.expression) for i in validate_resource(resource, **kw) if i.severity == "error"
    ]


def error_paths(resource: Any, **kw: Any) -> list[str]:
    return [
        e for i in validate_resource(resource, **kw) if i.severity == "error" for e in i.expression
    ]


# ---- definitions


def test_there_are_146_r4_resource_types() -> None:
    assert len(resource_types()) == 146
    assert (
        is_resource_type("Patient")
        and not is_resource_type("SubscriptionStatus")
        and not is_resource_type("DomainResource")
    )


# ---- the resource envelope


@pytest.mark.parametrize("value", [None, [], "Patient", 3])
def test_a_resource_that_is_not_a_json_object_is_an_error(value: Any) -> None:
    assert errors(value)


def test_a_resource_without_resource_type_is_an_error() -> None:
    assert errors({"id": "x"})


def test_an_unknown_resource_type_is_an_error() -> None:
    assert errors({"resourceType": "Patiente"})


def test_an_expected_type_mismatch_is_an_error() -> None:
    assert errors(patient(), expected_type="Observation")
    assert errors(patient(), expected_type="Patient") == []


def test_assert_valid_raises_a_400_with_all_issues() -> None:
    with pytest.raises(OperationOutcomeError) as caught:
        assert_valid(patient(gender="mail", birthDate="2019-02-29"))
    assert caught.value.status == 400
    assert len(caught.value.issues) == 2


def test_assert_valid_accepts_a_valid_resource() -> None:
    assert_valid(
        patient(name=[{"family": "Li", "given": ["Wei"]}], gender="female", birthDate="2020-02-29")
    )


# ---- ids


def test_a_resource_id_of_64_characters_is_valid() -> None:
    assert errors(patient(id="a" * 64)) == []


def test_a_resource_id_of_65_characters_is_an_error() -> None:
    assert errors({"resourceType": "Patient", "id": "a" * 65}) == [("invalid", ("Patient.id",))]


@pytest.mark.parametrize("bad", ["bad_id", "bad id", "a/b", ""])
def test_a_resource_id_with_illegal_characters_is_an_error(bad: str) -> None:
    assert ("invalid", ("Patient.id",)) in errors(patient(id=bad))


# ---- element names, JSON shapes, cardinality


def test_an_unknown_element_is_reported_at_its_parent() -> None:
    assert errors(patient(unknownElement=1)) == [("structure", ("Patient",))]


def test_a_repeating_element_must_be_an_array() -> None:
    assert errors(patient(name={"family": "Li"})) == [("structure", ("Patient.name",))]


def test_a_single_element_must_not_be_an_array() -> None:
    assert errors(patient(gender=["male"])) == [("structure", ("Patient.gender",))]


def test_an_empty_array_is_an_error() -> None:
    assert errors(patient(name=[])) == [("invalid", ("Patient.name",))]


def test_an_empty_object_is_an_error() -> None:
    assert errors(patient(name=[{}])) == [("invalid", ("Patient.name[0]",))]


def test_an_empty_string_is_an_error() -> None:
    assert errors(patient(name=[{"given": [""]}])) == [("invalid", ("Patient.name[0].given[0]",))]


def test_a_null_value_is_an_error() -> None:
    assert errors(patient(meta=None)) == [("invalid", ("Patient.meta",))]


def test_a_missing_required_element_is_reported_at_its_parent() -> None:
    obs = {"resourceType": "Observation", "status": "final"}
    assert errors(obs) == [("structure", ("Observation",))]


def test_a_missing_required_element_inside_a_backbone_element_is_reported_there() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "component": [{"valueString": "a"}],
    }
    assert errors(obs) == [("structure", ("Observation.component[0]",))]


def test_an_array_for_a_single_valued_element_inside_a_datatype_is_an_error() -> None:
    res = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "s", "code": "c", "userSelected": [True, False]}]},
    }
    assert errors(res) == [("structure", ("Observation.code.coding[0].userSelected",))]


# ---- choice types


def test_a_choice_element_takes_one_typed_name() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueString": "a",
    }
    assert errors(obs) == []


def test_two_types_of_one_choice_element_is_an_error() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueString": "a",
        "valueBoolean": True,
    }
    assert errors(obs) == [("structure", ("Observation",))]


def test_an_unknown_choice_suffix_is_an_error() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueFoo": "a"}
    assert errors(obs) == [("structure", ("Observation",))]


def test_errors_inside_a_choice_are_reported_with_of_type() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": "1"},
    }
    assert error_paths(obs) == ["Observation.value.ofType(Quantity).value"]


# ---- primitives


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2020-02-29", True),
        ("2019-02-29", False),
        ("2019-02", True),
        ("2019", True),
        ("2019-13", False),
        ("not a date", False),
        ("2019-04-31", False),
    ],
)
def test_dates_must_be_valid_calendar_dates(value: str, ok: bool) -> None:
    assert (errors(patient(birthDate=value)) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2020-02-29T10:00:00+08:00", True),
        ("2020-02-29T10:00:00", False),
        ("2020-02-30T10:00:00Z", False),
        ("2020-02-29T24:00:00Z", False),
        ("2020", True),
    ],
)
def test_date_times_need_a_timezone_when_they_have_a_time(value: str, ok: bool) -> None:
    assert (errors(patient(deceasedDateTime=value)) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2020-01-01T00:00:00Z", True),
        ("2020-01-01", False),
        ("2020-01-01T00:00:00.123+14:00", True),
    ],
)
def test_instants_are_full_date_times_with_timezone(value: str, ok: bool) -> None:
    assert (errors(patient(meta={"lastUpdated": value})) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [(True, True), ("true", False), (1, False)])
def test_booleans_must_be_json_booleans(value: Any, ok: bool) -> None:
    assert (errors(patient(active=value)) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [(1, True), (0, False), (2147483647, True), (2147483648, False), (1.5, False), ("1", False)],
)
def test_positive_ints_are_json_integers_from_1_to_2_31_minus_1(value: Any, ok: bool) -> None:
    rx = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [{"timing": {"repeat": {"count": value}}}],
    }
    assert (errors(rx) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [(0, True), (-1, False), (True, False)])
def test_unsigned_ints_are_non_negative(value: Any, ok: bool) -> None:
    res = {"resourceType": "Patient", "photo": [{"contentType": "image/png", "size": value}]}
    assert (errors(res) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [(1.5, True), (-0, True), ("1.5", False), (True, False)])
def test_decimals_are_json_numbers(value: Any, ok: bool) -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": value},
    }
    assert (errors(obs) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("http://x.org/a", True), ("Library/abc", True), ("has space", False), ("urn:uuid:1", True)],
)
def test_uris_may_be_relative_but_have_no_whitespace(value: str, ok: bool) -> None:
    assert (errors(patient(photo=[{"url": value}])) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [("male", True), (" male", False), ("male ", False)])
def test_codes_have_no_leading_or_trailing_whitespace(value: str, ok: bool) -> None:
    assert (errors(patient(gender=value)) == []) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("aGVsbG8=", True), ("aGVsbG8", False), ("%%%2@()()", False)]
)
def test_base64_binary_must_be_valid_base64(value: str, ok: bool) -> None:
    assert (errors(patient(photo=[{"contentType": "text/plain", "data": value}])) == []) is ok


def test_a_string_with_a_control_character_is_an_error() -> None:
    assert errors(patient(name=[{"text": "a\x01b"}])) == [("invalid", ("Patient.name[0].text",))]


def test_a_string_with_tab_and_newline_is_valid() -> None:
    assert errors(patient(name=[{"text": "a\tb\nc"}])) == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("urn:oid:1.2.3", True),
        ("urn:oid:1.02", False),
        ("urn:uuid:a5ad5a83-9b0c-4a39-9e5f-8c2b6c1b7c0e", True),
        ("urn:uuid:A5AD5A83-9B0C-4A39-9E5F-8C2B6C1B7C0E", False),
    ],
)
def test_identifier_system_oids_and_uuids_follow_their_regex(value: str, ok: bool) -> None:
    # Identifier.system is a uri; use Extension valueOid / valueUuid for the typed checks
    ext = {"url": "http://example.org/x", ("valueOid" if "oid" in value else "valueUuid"): value}
    assert (errors(patient(extension=[ext])) == []) is ok


# ---- primitive extensions


def test_a_primitive_may_carry_only_an_extension() -> None:
    assert (
        errors(
            patient(_birthDate={"extension": [{"url": "http://example.org/x", "valueString": "y"}]})
        )
        == []
    )


def test_primitive_arrays_with_nulls_must_be_aligned() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert errors(patient(name=[{"given": ["A", None], "_given": [None, ext]}])) == []
    assert errors(patient(name=[{"given": ["A", None], "_given": [None, None]}]))


def test_an_unknown_property_in_a_primitive_extension_is_an_error() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "_valueInteger": {"value": 0},
    }
    assert error_paths(obs) == ["Observation.value.ofType(integer)"]


# ---- bindings


def test_an_unknown_code_in_a_required_binding_is_an_error() -> None:
    assert errors(patient(gender="mail")) == [("code-invalid", ("Patient.gender",))]


def test_observation_status_is_bound_to_its_value_set() -> None:
    obs = {"resourceType": "Observation", "status": "done", "code": {"text": "x"}}
    assert errors(obs) == [("code-invalid", ("Observation.status",))]


# ---- references


@pytest.mark.parametrize(
    "ref",
    [
        "Patient/1",
        "Patient/1/_history/2",
        "http://x.org/fhir/Patient/1",
        "urn:uuid:a5ad5a83-9b0c-4a39-9e5f-8c2b6c1b7c0e",
        "urn:oid:1.2.3",
    ],
)
def test_well_formed_references_are_accepted(ref: str) -> None:
    assert errors(patient(generalPractitioner=[{"reference": ref}])) == []


@pytest.mark.parametrize("ref", ["Patientx/1", "denom-EXM104", "Patient/a_b"])
def test_malformed_relative_references_are_errors(ref: str) -> None:
    assert errors(patient(generalPractitioner=[{"reference": ref}])) == [
        ("invalid", ("Patient.generalPractitioner[0]",))
    ]


def test_a_reference_to_a_type_outside_the_target_profiles_is_a_warning() -> None:
    issues = validate_resource(patient(generalPractitioner=[{"reference": "Device/1"}]))
    assert [(i.severity, i.expression) for i in issues] == [
        ("warning", ("Patient.generalPractitioner[0].reference",))
    ]


# ---- contained resources, bundles, parameters


def test_contained_resources_must_have_a_resource_type() -> None:
    res = patient(contained=[{"id": "x"}], generalPractitioner=[{"reference": "#x"}])
    assert ("structure", ("Patient.contained[0]",)) in errors(res)


def test_errors_inside_contained_resources_carry_the_java_annotation() -> None:
    res = patient(
        contained=[{"resourceType": "Organization", "id": "o1", "active": "yes"}],
        managingOrganization={"reference": "#o1"},
    )
    assert error_paths(res) == ["Patient.contained[0]/*Organization/o1*/.active"]


def test_a_contained_resource_nobody_references_breaks_dom_3() -> None:
    res = patient(contained=[{"resourceType": "Organization", "id": "o1", "name": "x"}])
    assert errors(res) == [("invalid", ("Patient.contained[0]",))]


def test_a_contained_resource_may_not_contain_resources_dom_2() -> None:
    inner = {
        "resourceType": "Organization",
        "id": "o1",
        "contained": [{"resourceType": "Organization", "id": "o2", "name": "y"}],
        "partOf": {"reference": "#o2"},
    }
    res = patient(contained=[inner], managingOrganization={"reference": "#o1"})
    assert ("invariant", ("Patient.contained[0]",)) in errors(res)


def test_a_contained_resource_may_not_have_a_version_id_dom_4() -> None:
    res = patient(
        contained=[{"resourceType": "Organization", "id": "o1", "meta": {"versionId": "1"}}],
        managingOrganization={"reference": "#o1"},
    )
    assert errors(res) == [("invariant", ("Patient.contained[0]",))]


def bundle(entries: list[dict[str, Any]], btype: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def test_bundle_entry_resources_are_validated_recursively() -> None:
    b = bundle(
        [
            {
                "fullUrl": "urn:uuid:a5ad5a83-9b0c-4a39-9e5f-8c2b6c1b7c0e",
                "resource": patient(birthDate="2019-02-29"),
            }
        ]
    )
    assert error_paths(b) == ["Bundle.entry[0].resource/*Patient/p1*/.birthDate"]


def test_duplicate_full_urls_break_bdl_7() -> None:
    e = {"fullUrl": "http://x.org/Patient/p1", "resource": patient()}
    assert ("invariant", ("Bundle",)) in errors(bundle([e, copy.deepcopy(e)]))


def test_a_relative_full_url_is_an_error() -> None:
    assert errors(bundle([{"fullUrl": "Patient/p1", "resource": patient()}])) == [
        ("invalid", ("Bundle.entry[0]",))
    ]


def test_an_entry_without_resource_request_or_response_breaks_bdl_5() -> None:
    assert ("invariant", ("Bundle.entry[0]",)) in errors(
        bundle([{"fullUrl": "http://x.org/Patient/p1"}])
    )


def test_a_transaction_entry_needs_a_request_bdl_3() -> None:
    assert ("invariant", ("Bundle",)) in errors(
        bundle(
            [{"fullUrl": "urn:uuid:a5ad5a83-9b0c-4a39-9e5f-8c2b6c1b7c0e", "resource": patient()}],
            "transaction",
        )
    )


def test_the_self_link_may_occur_only_once() -> None:
    b = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [
            {"relation": "self", "url": "http://x/1"},
            {"relation": "self", "url": "http://x/2"},
        ],
    }
    assert errors(b) == [("invalid", ("Bundle.link[1]",))]


def test_parameters_resources_are_validated_recursively() -> None:
    p = {
        "resourceType": "Parameters",
        "parameter": [{"name": "r", "resource": {"resourceType": "Patient", "gender": "x"}}],
    }
    assert error_paths(p) == ["Parameters.parameter[0].resource/*Patient/null*/.gender"]


def test_a_parameter_with_both_value_and_resource_breaks_inv_1() -> None:
    p = {
        "resourceType": "Parameters",
        "parameter": [{"name": "r", "valueString": "a", "resource": patient()}],
    }
    assert errors(p) == [("invariant", ("Parameters.parameter[0]",))]


# ---- invariants


def test_a_period_that_ends_before_it_starts_breaks_per_1() -> None:
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": {"start": "2020-01-02", "end": "2020-01-01"},
    }
    assert errors(enc) == [("invariant", ("Encounter.period",))]


def test_a_period_that_starts_and_ends_the_same_day_satisfies_per_1() -> None:
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": {"start": "2020-01-01T08:00:00+08:00", "end": "2020-01-01T00:30:00Z"},
    }
    assert errors(enc) == []


def test_a_probability_of_100_is_valid_and_100_point_1_breaks_ras_2() -> None:
    def ra(p: float) -> dict[str, Any]:
        return {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": p}],
        }

    assert errors(ra(100)) == []
    assert errors(ra(100.1)) == [("invariant", ("RiskAssessment.prediction[0]",))]


def test_an_extension_with_both_value_and_extensions_breaks_ext_1() -> None:
    ext = {
        "url": "http://example.org/x",
        "valueString": "a",
        "extension": [{"url": "y", "valueString": "b"}],
    }
    assert errors(patient(extension=[ext])) == [("invariant", ("Patient.extension[0]",))]


def test_an_extension_without_url_is_an_error() -> None:
    assert ("invalid", ("Patient.extension[0]",)) in errors(
        patient(extension=[{"valueString": "a"}])
    )


def test_an_unknown_extension_is_a_warning_by_default_and_an_error_with_java_defaults() -> None:
    res = patient(extension=[{"url": "http://other.org/ext", "valueString": "a"}])
    assert errors(res) == []
    assert errors(res, options=ValidationOptions.java_defaults()) == [
        ("structure", ("Patient.extension[0]",))
    ]
    assert (
        errors(
            res, options=ValidationOptions.java_defaults(extension_domains=("http://other.org/",))
        )
        == []
    )


def test_more_than_one_enable_when_needs_enable_behavior_que_12() -> None:
    item = {
        "linkId": "1",
        "type": "string",
        "enableWhen": [{"question": "0", "operator": "exists", "answerBoolean": True}] * 2,
    }
    q = {"resourceType": "Questionnaire", "status": "draft", "item": [item]}
    assert errors(q) == [("invariant", ("Questionnaire.item[0]",))]
    item["enableBehavior"] = "all"
    assert errors(q) == []


def test_nested_questionnaire_items_follow_the_content_reference() -> None:
    q = {
        "resourceType": "Questionnaire",
        "status": "draft",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "2", "type": "string", "bogus": 1}],
            }
        ],
    }
    assert errors(q) == [("structure", ("Questionnaire.item[0].item[0]",))]


def test_attachment_size_must_match_its_data() -> None:
    assert (
        errors(patient(photo=[{"contentType": "text/plain", "data": "aGVsbG8=", "size": 5}])) == []
    )
    assert errors(
        patient(photo=[{"contentType": "text/plain", "data": "aGVsbG8=", "size": 6}])
    ) == [("structure", ("Patient.photo[0]",))]


# ---- narrative


def test_a_plain_xhtml_div_is_valid() -> None:
    assert errors(patient(text={"status": "generated", "div": DIV})) == []


@pytest.mark.parametrize(
    "div",
    [
        '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">x</p></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:x()">x</a></div>',
        '<div xmlns="http://www.w3.org/1999/xhtml">&reg;</div>',
        "<div>no namespace</div>",
        '<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>',
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
        '<!DOCTYPE x [<!ENTITY a "b">]><div xmlns="http://www.w3.org/1999/xhtml">&a;</div>',
    ],
)
def test_unsafe_or_malformed_narratives_are_errors(div: str) -> None:
    assert ("invalid", ("Patient.text.div",)) in errors(
        patient(text={"status": "generated", "div": div})
    )


def test_html_in_a_string_is_an_error_only_with_security_checks() -> None:
    res = patient(name=[{"text": "<b>Li</b>"}])
    assert errors(res) == []
    assert errors(res, options=ValidationOptions(security_checks=True)) == [
        ("invalid", ("Patient.name[0].text",))
    ]


def test_an_empty_property_name_is_reported_not_crashed_on():
    """Found by the no-500 property test: ``meta: {"": null}`` raised IndexError."""
    issues = validate_resource({"resourceType": "Patient", "meta": {"": None}})
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("error", "structure", ("Patient.meta",))
    ]
