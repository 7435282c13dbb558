"""Pure identity rules: phones, login names, passwords, names, ages and guardian eligibility."""

from __future__ import annotations

from datetime import date

import pytest

from carenet.access.policy import AuthPolicy
from carenet.access.rules import (
    age_on,
    guardian_findings,
    normalise_login_name,
    normalise_person_name,
    normalise_phone,
    nth_birthday,
    password_acceptable,
)

POLICY = AuthPolicy()
TODAY = date(2026, 1, 15)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("0086-138-1234-5678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("12812345678", None),  # no mobile prefix 12
        ("1381234567", None),
        ("138123456789", None),
        ("１３８１２３４５６７８", None),  # full-width digits are not ASCII
        ("", None),
    ],
)
def test_normalise_phone_accepts_mainland_mobiles_only(raw: str, expected: str | None) -> None:
    assert normalise_phone(raw) == expected


def test_login_names_are_case_folded_and_restricted() -> None:
    assert normalise_login_name(" Dr.Wang@Hosp ") == "dr.wang@hosp"
    assert normalise_login_name("ab") is None
    assert normalise_login_name("a" * 65) is None
    assert normalise_login_name("王医生") is None
    assert normalise_login_name("has space") is None


def test_password_needs_length_letters_and_digits() -> None:
    assert password_acceptable("abcdefghi1", POLICY)
    assert not password_acceptable("abcdefgh1", POLICY)  # 9 characters
    assert not password_acceptable("abcdefghij", POLICY)
    assert not password_acceptable("1234567890", POLICY)


def test_person_names_allow_chinese_minority_and_latin_names() -> None:
    assert normalise_person_name(" 张  伟 ") == "张 伟"
    assert normalise_person_name("买买提•艾力") == "买买提·艾力"
    assert normalise_person_name("Anna Li") == "Anna Li"
    assert normalise_person_name("张伟1") is None
    assert normalise_person_name("") is None
    assert normalise_person_name("张" * 51) is None


def test_age_counts_completed_years_and_leap_day_birthdays() -> None:
    assert age_on(date(2008, 1, 15), TODAY) == 18
    assert age_on(date(2008, 1, 16), TODAY) == 17
    assert nth_birthday(date(2008, 2, 29), 18) == date(2026, 3, 1)
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


def _codes(relationship: str, ward: date | None, guardian: date | None, consent: bool) -> list[str]:
    _, findings = guardian_findings(
        relationship=relationship,
        ward_birth=ward,
        guardian_birth=guardian,
        guardian_consent=consent,
        today=TODAY,
        policy=POLICY,
    )
    return [f.code for f in findings]


ADULT = date(1985, 5, 1)


def test_parent_of_a_minor_over_14_needs_no_consent() -> None:
    basis, findings = guardian_findings(
        relationship="MTH",
        ward_birth=date(2012, 1, 15),  # 14 today
        guardian_birth=ADULT,
        guardian_consent=False,
        today=TODAY,
        policy=POLICY,
    )
    assert (basis, findings) == ("minor", [])


def test_child_under_14_needs_the_guardians_consent() -> None:
    day_before_14 = date(2012, 1, 16)
    assert _codes("FTH", day_before_14, ADULT, False) == ["AUTH-GUARDIAN-CONSENT-REQUIRED"]
    assert _codes("FTH", day_before_14, ADULT, True) == []


def test_adults_between_18_and_60_cannot_get_a_guardian_here() -> None:
    assert _codes("GUARD", date(2008, 1, 15), ADULT, True) == ["AUTH-GUARDIAN-WARD-NOT-ELIGIBLE"]
    assert _codes("CHILD", date(1966, 1, 16), ADULT, True) == ["AUTH-GUARDIAN-WARD-NOT-ELIGIBLE"]


def test_elders_from_60_take_spouse_children_or_guardian() -> None:
    basis, findings = guardian_findings(
        relationship="CHILD",
        ward_birth=date(1966, 1, 15),  # 60 today
        guardian_birth=ADULT,
        guardian_consent=False,
        today=TODAY,
        policy=POLICY,
    )
    assert (basis, findings) == ("elder", [])
    assert _codes("MTH", date(1950, 1, 1), ADULT, False) == [
        "AUTH-GUARDIAN-RELATIONSHIP-NOT-ALLOWED"
    ]


def test_a_child_cannot_be_the_guardian_of_a_minor_by_relationship_or_age() -> None:
    assert _codes("CHILD", date(2015, 1, 1), ADULT, True) == [
        "AUTH-GUARDIAN-RELATIONSHIP-NOT-ALLOWED"
    ]
    assert _codes("SIB", date(1950, 1, 1), date(2010, 1, 1), False) == ["AUTH-GUARDIAN-NOT-ADULT"]


def test_a_ward_without_birth_date_is_not_eligible() -> None:
    assert _codes("MTH", None, ADULT, True) == ["AUTH-GUARDIAN-WARD-NOT-ELIGIBLE"]
