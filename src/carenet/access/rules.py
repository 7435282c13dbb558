"""Pure rules of identity: phone numbers, login names, passwords, personal names, ages and who
may be bound as a guardian of whom. No I/O; services apply them."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from carenet.access.policy import AuthPolicy
from carenet.fhir.findings import Finding

V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

#: v3-RoleCode codes (HL7 display, Chinese) of who may act for a minor: parents, grandparents
#: (民法典 Art 27: grandparents are next in line when parents cannot) and a legal guardian.
MINOR_GUARDIAN_RELATIONSHIPS: dict[str, tuple[str, str]] = {
    "MTH": ("mother", "母亲"),
    "FTH": ("father", "父亲"),
    "PRN": ("parent", "父母"),
    "GRMTH": ("grandmother", "祖母/外祖母"),
    "GRFTH": ("grandfather", "祖父/外祖父"),
    "GRPRN": ("grandparent", "祖父母/外祖父母"),
    "GUARD": ("guardian", "监护人"),
}
#: ... and for an elder: spouse, children, grandchildren, siblings (民法典 Art 28) or a guardian.
ELDER_GUARDIAN_RELATIONSHIPS: dict[str, tuple[str, str]] = {
    "SPS": ("spouse", "配偶"),
    "HUSB": ("husband", "丈夫"),
    "WIFE": ("wife", "妻子"),
    "CHILD": ("child", "子女"),
    "SONC": ("son", "儿子"),
    "DAUC": ("daughter", "女儿"),
    "GRNDCHILD": ("grandchild", "孙子女/外孙子女"),
    "SIB": ("sibling", "兄弟姐妹"),
    "GUARD": ("guardian", "监护人"),
}
GUARDIAN_RELATIONSHIPS: dict[str, tuple[str, str]] = {
    **MINOR_GUARDIAN_RELATIONSHIPS,
    **ELDER_GUARDIAN_RELATIONSHIPS,
}

_MOBILE = re.compile(r"1[3-9]\d{9}", re.ASCII)
_LOGIN_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{2,63}", re.ASCII)


def normalise_phone(value: str) -> str | None:
    """An 11-digit mainland mobile number from what a user typed (spaces, dashes, +86 or 0086
    prefix allowed); None when it is not one."""
    digits = re.sub(r"[\s\-()]", "", value.strip())
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    return digits if _MOBILE.fullmatch(digits) else None


def normalise_login_name(value: str) -> str | None:
    """The case-folded login name, or None when it is not 3-64 of ``a-z 0-9 . _ - @``."""
    name = value.strip().lower()
    return name if _LOGIN_NAME.fullmatch(name) else None


def password_acceptable(password: str, policy: AuthPolicy) -> bool:
    """Long enough, and with at least one letter and one digit."""
    return (
        len(password) >= policy.min_password_length
        and any(c.isalpha() for c in password)
        and any(c.isdigit() for c in password)
    )


def normalise_person_name(value: str) -> str | None:
    """A personal name as written on the resident ID card: NFKC, inner whitespace collapsed,
    1-50 characters of letters, ``·`` (少数民族 names) and spaces; None otherwise."""
    name = " ".join(unicodedata.normalize("NFKC", value).split())
    if not 1 <= len(name) <= 50:
        return None
    if not all(c.isalpha() or c in "·• '-" for c in name):
        return None
    return name.replace("•", "·")


def age_on(birth: date, day: date) -> int:
    """Completed years of age on ``day`` (a 29 February birthday counts on 1 March)."""
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


def nth_birthday(birth: date, years: int) -> date:
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:  # 29 February in a year without one
        return date(birth.year + years, 3, 1)


GuardianBasis = Literal["minor", "elder"]


def guardian_findings(
    *,
    relationship: str,
    ward_birth: date | None,
    guardian_birth: date | None,
    guardian_consent: bool,
    today: date,
    policy: AuthPolicy,
) -> tuple[GuardianBasis | None, list[Finding]]:
    """Whether an account may be bound as guardian of a ward, and on what basis.

    - A minor is under ``policy.adult_age`` (18, 民法典 Art 17); parents, grandparents or a legal
      guardian act for them (Art 27).
    - An elder is ``policy.elder_age`` (60) or over (老年人权益保障法 Art 2); spouse, children,
      grandchildren, siblings or a legal guardian act for them (民法典 Art 28).
    - Other adults cannot be bound here (a court-appointed guardianship is an offline process).
    - The guardian must be an adult.
    - A child under ``policy.guardian_consent_age`` (14): the guardian's separate consent to
      processing the child's sensitive personal information (RULES.md PRIV-1; 个人信息保护法
      Art 31) must be given with the binding.
    """
    findings: list[Finding] = []

    def add(code: str, zh: str, en: str, expression: str | None = None) -> None:
        findings.append(Finding(code, "error", zh, en, expression))

    if ward_birth is None:
        add(
            "AUTH-GUARDIAN-WARD-NOT-ELIGIBLE",
            "被监护人没有出生日期，无法确认其为未成年人或老年人",
            "the ward has no birth date, so it cannot be a minor or an elder",
        )
        return None, findings
    ward_age = age_on(ward_birth, today)
    basis: GuardianBasis | None
    if ward_age < policy.adult_age:
        basis = "minor"
        allowed = MINOR_GUARDIAN_RELATIONSHIPS
    elif ward_age >= policy.elder_age:
        basis = "elder"
        allowed = ELDER_GUARDIAN_RELATIONSHIPS
    else:
        add(
            "AUTH-GUARDIAN-WARD-NOT-ELIGIBLE",
            f"只能为未满{policy.adult_age}周岁的未成年人或{policy.elder_age}周岁以上的老年人绑定监护人",
            f"guardians are bound only for minors under {policy.adult_age} "
            f"and elders aged {policy.elder_age} or over",
        )
        return None, findings
    if relationship not in allowed:
        add(
            "AUTH-GUARDIAN-RELATIONSHIP-NOT-ALLOWED",
            f"关系{relationship}不适用于{'未成年人' if basis == 'minor' else '老年人'}",
            f"relationship {relationship} does not apply to {'a minor' if basis == 'minor' else 'an elder'}",
            "relationship",
        )
    if guardian_birth is None or age_on(guardian_birth, today) < policy.adult_age:
        add(
            "AUTH-GUARDIAN-NOT-ADULT",
            "监护人须为已实名认证的成年人",
            "a guardian must be a real-name verified adult",
        )
    if ward_age < policy.guardian_consent_age and not guardian_consent:
        age = policy.guardian_consent_age
        add(
            "AUTH-GUARDIAN-CONSENT-REQUIRED",
            f"处理不满{age}周岁未成年人的个人信息须取得监护人的单独同意（个人信息保护法第31条）",
            f"processing data of a child under {age} needs the guardian's separate consent "
            "(PIPL Art 31)",
            "consent",
        )
    return basis, findings
