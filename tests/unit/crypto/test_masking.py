"""Masked resident IDs and phone numbers for lists, CLI output, audit text and logs (PRIV-1)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from carenet.crypto.masking import mask_query, mask_resource, mask_text, mask_value
from carenet.fhir.identifiers import RESIDENT_ID

ID = "11010519491231002X"
RID = "urn:oid:2.16.156.10011.1.3"


def test_mask_value_by_kind():
    assert mask_value("resident_id", ID) == "1101**********002X"
    assert mask_value("phone", "13812345678") == "138****5678"


def test_a_masked_resource_is_a_copy_with_every_sensitive_value_masked():
    resource = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:test:mrn", "value": "MRN-1"},
            {"system": RESIDENT_ID, "value": ID},
        ],
        "telecom": [
            {"system": "phone", "value": "13812345678"},
            {"system": "email", "value": "wang@example.org"},
        ],
        "contact": [{"telecom": [{"system": "sms", "value": "+86 139 0000 1111"}]}],
    }
    masked = mask_resource(resource)
    assert masked == {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:test:mrn", "value": "MRN-1"},
            {"system": RESIDENT_ID, "value": "1101**********002X"},
        ],
        "telecom": [
            {"system": "phone", "value": "138****5678"},
            {"system": "email", "value": "wang@example.org"},
        ],
        "contact": [{"telecom": [{"system": "sms", "value": "139****1111"}]}],
    }
    assert resource["identifier"][1]["value"] == ID  # the original is untouched


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"身份证{ID}已核验", "身份证1101**********002X已核验"),
        (f"id={ID.lower()}", "id=1101**********002X"),
        ("old 15-digit 110105491231002", "old 15-digit 1101*******1002"),
        ("call 13812345678.", "call 138****5678."),
        ("电话+86 138-1234-5678", "电话138****5678"),
        ("landline 0571-87654321", "landline 057*****4321"),
        # Digit runs inside longer numbers, timestamps and UUIDs are left alone.
        ("at 1712345678901 ms", "at 1712345678901 ms"),
        ("Patient/a13812345678b", "Patient/a13812345678b"),
        ("12345", "12345"),
    ],
)
def test_mask_text_masks_what_looks_like_an_id_or_a_phone_number(text, masked):
    assert mask_text(text) == masked


def test_mask_query_masks_token_values_by_their_system_and_phone_parameters():
    query = (
        f"identifier={RID}%7C{ID}&phone=%2B86+138+1234+5678&telecom=phone%7C13812345678"
        "&telecom=email%7Cwang%40example.org&name=%E7%8E%8B&_count=5"
        f"&subject%3APatient.identifier={ID}&general-practitioner%3Aidentifier={RID}%7C{ID}"
        "&phone=123"
    )
    assert parse_qsl(mask_query(query)) == [
        ("identifier", f"{RID}|1101**********002X"),
        ("phone", "138****5678"),
        ("telecom", "phone|138****5678"),
        ("telecom", "email|wang@example.org"),
        ("name", "王"),
        ("_count", "5"),
        ("subject:Patient.identifier", "1101**********002X"),
        ("general-practitioner:identifier", f"{RID}|1101**********002X"),
        ("phone", "***"),
    ]


def test_mask_query_leaves_a_query_without_sensitive_values_unchanged():
    query = (
        "_id=ad93fb6f-8475-44ce-b87a-43a015cce4a2&_lastUpdated=gt2024-01-01&_until=1712345678901"
    )
    assert mask_query(query) == query
