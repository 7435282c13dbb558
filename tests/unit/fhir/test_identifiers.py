"""RULES.md ID-1: resident ID numbers, at their boundaries."""

from __future__ import annotations

from datetime import date

import pytest

from carenet.fhir.identifiers import (
    make_resident_id,
    normalise_resident_id,
    parse_resident_id,
    resident_id_check_digit,
    uscc_check_character,
    validate_resident_id,
)

TODAY = date(2026, 11, 22)


def codes(value: str, **kwargs: object) -> list[str]:
    return [f.code for f in validate_resident_id(value, today=TODAY, **kwargs)]  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["11010519491231002X", "440524188001010014"])
def test_the_two_examples_of_rules_md_are_valid(value: str) -> None:
    assert validate_resident_id(value, today=TODAY) == []


def test_check_digit_of_the_examples() -> None:
    assert resident_id_check_digit("11010519491231002") == "X"
    assert resident_id_check_digit("44052418800101001") == "4"


def test_check_digit_needs_exactly_17_digits() -> None:
    with pytest.raises(ValueError):
        resident_id_check_digit("1101051949123100")
    with pytest.raises(ValueError):
        resident_id_check_digit("1101051949123100A")


def test_a_wrong_check_digit_is_reported_with_the_expected_one() -> None:
    findings = validate_resident_id(
        "110105194912310021", today=TODAY, expression="Patient.identifier[0].value"
    )
    assert [(f.code, f.severity, f.expression) for f in findings] == [
        ("ID-RESIDENT-CHECK-DIGIT", "error", "Patient.identifier[0].value")
    ]
    assert "expected X" in findings[0].message_en
    assert "应为X" in findings[0].message_zh


def test_a_lowercase_x_is_an_error_but_normalises_to_a_valid_number() -> None:
    assert codes("11010519491231002x") == ["ID-RESIDENT-CHECK-CHARACTER-CASE"]
    assert normalise_resident_id(" 11010519491231002x ") == "11010519491231002X"
    assert validate_resident_id(normalise_resident_id("11010519491231002x"), today=TODAY) == []


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002",
        "11010519491231002X0",
        "",
        "1101051949123100 X",
        "11010519491231002X\n",
        "１１０１０５１９４９１２３１００２X",
    ],
)
def test_anything_but_17_digits_and_a_digit_or_x_is_a_format_error_and_nothing_more(
    value: str,
) -> None:
    assert codes(value) == ["ID-RESIDENT-FORMAT"]


def test_february_30_is_not_a_birth_date() -> None:
    first17 = "33012219900230001"
    value = first17 + resident_id_check_digit(first17)
    assert codes(value) == ["ID-RESIDENT-BIRTH-DATE"]


def test_february_29_counts_only_in_leap_years() -> None:
    assert codes(make_resident_id("330122", date(2000, 2, 29), 1)) == []
    first17 = "33012219000229001"  # 1900 was not a leap year
    assert codes(first17 + resident_id_check_digit(first17)) == ["ID-RESIDENT-BIRTH-DATE"]


def test_a_birth_date_tomorrow_is_in_the_future_and_today_is_not() -> None:
    assert codes(make_resident_id("330122", date(2026, 11, 23), 2)) == [
        "ID-RESIDENT-BIRTH-DATE-FUTURE"
    ]
    assert codes(make_resident_id("330122", TODAY, 2)) == []


def test_a_region_not_starting_with_a_province_code_is_an_error() -> None:
    first17 = "99012219900101001"
    assert codes(first17 + resident_id_check_digit(first17)) == ["ID-RESIDENT-REGION"]


def test_an_unknown_region_is_only_a_warning_when_a_region_list_is_given() -> None:
    value = "440524188001010014"  # 440524 was withdrawn, yet the number stays valid
    findings = validate_resident_id(value, known_region={"330122"}, today=TODAY)
    assert [(f.code, f.severity) for f in findings] == [("ID-RESIDENT-REGION-UNKNOWN", "warning")]
    assert codes(value, known_region=lambda code: code.startswith("44")) == []
    assert codes(value) == []


def test_several_problems_are_all_reported_in_order() -> None:
    assert codes("990105194902300021") == [
        "ID-RESIDENT-REGION",
        "ID-RESIDENT-BIRTH-DATE",
        "ID-RESIDENT-CHECK-DIGIT",
    ]


def test_parse_gives_region_birth_date_and_sex() -> None:
    assert parse_resident_id("11010519491231002X") == ("110105", date(1949, 12, 31), "female")
    assert parse_resident_id("440524188001010014") == ("440524", date(1880, 1, 1), "male")
    assert parse_resident_id("11010519491231002x").sex == "female"


def test_parse_refuses_an_invalid_number_naming_the_rule() -> None:
    with pytest.raises(ValueError, match="ID-RESIDENT-CHECK-DIGIT"):
        parse_resident_id("110105194912310021")


def test_make_resident_id_round_trips_through_parse() -> None:
    value = make_resident_id("330324", date(1985, 6, 15), 37)
    assert parse_resident_id(value) == ("330324", date(1985, 6, 15), "male")
    with pytest.raises(ValueError):
        make_resident_id("33032", date(1985, 6, 15), 37)
    with pytest.raises(ValueError):
        make_resident_id("330324", date(1985, 6, 15), 1000)


def test_finding_becomes_an_operation_outcome_issue_with_its_code() -> None:
    finding = validate_resident_id(
        "110105194912310021", today=TODAY, expression="Patient.identifier[0].value"
    )[0]
    issue = finding.to_issue().to_fhir()
    assert issue["severity"] == "error"
    assert issue["details"]["coding"][0]["code"] == "ID-RESIDENT-CHECK-DIGIT"
    assert issue["expression"] == ["Patient.identifier[0].value"]


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000802100433B"])
def test_uscc_check_character_of_published_codes(code: str) -> None:
    assert uscc_check_character(code[:17]) == code[17]
