"""Strict JSON parsing of request bodies."""

from __future__ import annotations

import pytest

from carenet.fhir.jsonparse import parse_json
from carenet.fhir.outcomes import OperationOutcomeError


def refusal(raw: bytes | str) -> OperationOutcomeError:
    with pytest.raises(OperationOutcomeError) as caught:
        parse_json(raw)
    err = caught.value
    assert err.status == 400
    assert err.issues[0].code == "structure"
    return err


def test_parses_a_valid_document_from_bytes_and_str() -> None:
    assert parse_json(b'{"resourceType": "Patient", "name": [{"given": ["\xc3\xa9"]}]}') == {
        "resourceType": "Patient",
        "name": [{"given": ["é"]}],
    }
    assert parse_json('{"a": [1, 2.5, true, null]}') == {"a": [1, 2.5, True, None]}


def test_a_utf8_byte_order_mark_is_tolerated() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_duplicate_keys_are_refused_with_their_location() -> None:
    err = refusal('{"resourceType": "Patient",\n "name": [{"family": "a", "family": "b"}]}')
    assert "duplicate property name 'family'" in err.issues[0].diagnostics
    assert "line 2" in err.issues[0].diagnostics
    assert err.issues[0].expression == ("Patient.name[0]",)


def test_the_same_key_in_sibling_objects_is_not_a_duplicate() -> None:
    assert parse_json('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("raw", ['{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'])
def test_nan_and_infinity_are_refused(raw: str) -> None:
    assert "not a valid JSON number" in refusal(raw).issues[0].diagnostics


def test_comments_are_refused() -> None:
    err = refusal('{"resourceType": "Patient",\n  // note\n  "id": "x"}')
    assert "comments are not allowed" in err.issues[0].diagnostics
    assert "line 2, column 3" in err.issues[0].diagnostics


@pytest.mark.parametrize(("raw", "what"), [('{"a": [1, 2,]}', "array"), ('{"a": 1,}', "object")])
def test_trailing_commas_are_refused(raw: str, what: str) -> None:
    assert f"extra comma at the end of the {what}" in refusal(raw).issues[0].diagnostics


def test_a_missing_comma_is_refused_with_its_path() -> None:
    err = refusal('{"resourceType": "Patient", "name": [{"family": "a" "given": ["b"]}]}')
    assert "a comma is missing" in err.issues[0].diagnostics
    assert err.issues[0].expression == ("Patient.name[0]",)


def test_unquoted_property_names_are_refused() -> None:
    assert "double quotes" in refusal('{resourceType: "Patient"}').issues[0].diagnostics


def test_invalid_utf8_is_refused() -> None:
    assert "invalid UTF-8" in refusal(b'{"a": "\xff"}').issues[0].diagnostics


def test_an_empty_body_is_refused() -> None:
    refusal(b"")


def test_deep_nesting_is_refused_not_crashed() -> None:
    refusal("[" * 100000 + "]" * 100000)
