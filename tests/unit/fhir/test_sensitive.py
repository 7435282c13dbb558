"""Which elements hold resident IDs and phone numbers, and which search parameters find them."""

from __future__ import annotations

import orjson
import pytest

from carenet.fhir.identifiers import RESIDENT_ID
from carenet.fhir.searchparams import params_for, resource_types
from carenet.fhir.sensitive import (
    PHONE_KIND,
    RESIDENT_ID_KIND,
    _path_types,
    kind_of,
    kind_of_system,
    may_hold_sensitive,
    param_kinds,
    sensitive_elements,
)

ID = "11010519491231002X"


def a_patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "contained": [
            {
                "resourceType": "RelatedPerson",
                "id": "mum",
                "patient": {"reference": "#"},
                "telecom": [{"system": "sms", "value": "13900001111"}],
            }
        ],
        "extension": [
            {
                "url": "urn:test:emergency-phone",
                "valueContactPoint": {"system": "phone", "value": "13700002222"},
            }
        ],
        "identifier": [
            {"system": "urn:test:mrn", "value": "MRN-1"},
            {"system": RESIDENT_ID, "value": ID, "type": {"text": "居民身份证"}},
        ],
        "telecom": [
            {"system": "email", "value": "wang@example.org"},
            {"system": "phone", "value": "13800138000", "use": "mobile"},
        ],
        "contact": [{"telecom": [{"system": "phone", "value": "0571-87654321"}]}],
        "generalPractitioner": [{"identifier": {"system": RESIDENT_ID, "value": ID}}],
    }


def test_sensitive_elements_are_found_wherever_they_sit_and_nothing_else_is():
    found = [(path, kind, e["value"]) for e, kind, path in sensitive_elements(a_patient())]
    assert found == [
        ("contained[0].telecom[0].value", PHONE_KIND, "13900001111"),
        ("extension[0].valueContactPoint.value", PHONE_KIND, "13700002222"),
        ("identifier[1].value", RESIDENT_ID_KIND, ID),
        ("telecom[1].value", PHONE_KIND, "13800138000"),
        ("contact[0].telecom[0].value", PHONE_KIND, "0571-87654321"),
        ("generalPractitioner[0].identifier.value", RESIDENT_ID_KIND, ID),
    ]


@pytest.mark.parametrize(
    ("element", "kind"),
    [
        ({"system": RESIDENT_ID, "value": ID}, RESIDENT_ID_KIND),
        ({"system": "phone", "value": "1"}, PHONE_KIND),
        ({"system": "sms", "value": "1"}, PHONE_KIND),
        ({"system": "fax", "value": "1"}, None),
        ({"system": "email", "value": "a@b"}, None),
        ({"system": RESIDENT_ID}, None),
        ({"system": RESIDENT_ID, "value": 110105}, None),
        ({"system": RESIDENT_ID, "code": ID}, None),
        ("phone", None),
    ],
)
def test_kind_of_an_element_depends_on_its_system_and_a_string_value(element, kind):
    assert kind_of(element) == kind


def test_kind_of_a_search_system():
    assert kind_of_system(RESIDENT_ID) == RESIDENT_ID_KIND
    assert kind_of_system("phone") == kind_of_system("sms") == PHONE_KIND
    assert kind_of_system("email") is None
    assert kind_of_system(None) is None


def test_compact_json_without_a_sensitive_system_is_recognised_without_parsing():
    assert may_hold_sensitive(orjson.dumps(a_patient()).decode())
    plain = {"resourceType": "Patient", "telecom": [{"system": "email", "value": "a@b"}]}
    assert not may_hold_sensitive(orjson.dumps(plain).decode())


@pytest.mark.parametrize(
    ("res_type", "code", "kinds"),
    [
        ("Patient", "identifier", {RESIDENT_ID_KIND}),
        ("Patient", "phone", {PHONE_KIND}),
        ("Patient", "telecom", {PHONE_KIND}),
        ("RelatedPerson", "identifier", {RESIDENT_ID_KIND}),
        ("RelatedPerson", "phone", {PHONE_KIND}),
        ("Practitioner", "telecom", {PHONE_KIND}),
        ("Person", "identifier", {RESIDENT_ID_KIND}),
        ("DocumentReference", "identifier", {RESIDENT_ID_KIND}),
        # Found by the element's type, not by the parameter's name.
        ("ServiceRequest", "requisition", {RESIDENT_ID_KIND}),
        ("Subscription", "contact", {PHONE_KIND}),
        ("Composition", "related-id", {RESIDENT_ID_KIND}),
        ("Observation", "code", set()),
        ("Patient", "gender", set()),
        ("Patient", "name", set()),  # a string parameter
        ("Patient", "organization", set()),  # a reference parameter
        ("Patient", "no-such-param", set()),
    ],
)
def test_param_kinds_say_which_token_parameters_may_hold_sensitive_values(res_type, code, kinds):
    assert param_kinds(res_type, code) == kinds


def test_path_types_follow_backbone_elements_and_data_types():
    assert _path_types("Patient", "Patient.contact.telecom") == ("ContactPoint",)
    assert _path_types("Patient", "Patient.telecom.where(system='phone')") == ("ContactPoint",)
    assert _path_types("Patient", "Patient.name.family") == ("string",)
    assert _path_types("Composition", "Composition.relatesTo.target as Identifier") == (
        "Identifier",
    )
    assert _path_types("Patient", "Patient.nosuch") == ()


def test_no_string_parameter_of_r4_selects_an_identifier_or_a_contact_point():
    """Why idx_string never receives a resident ID or phone number: only token rows do."""
    selecting = []
    for res_type in sorted(resource_types()):
        for code, p in params_for(res_type).items():
            if p.type != "string" or not p.expression:
                continue
            for alternative in p.expression.split("|"):
                if {"Identifier", "ContactPoint"} & set(_path_types(res_type, alternative)):
                    selecting.append((res_type, code))
    assert selecting == []
