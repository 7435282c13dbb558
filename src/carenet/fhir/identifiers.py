"""Identifier and code systems, defined once, and the pure rule ID-1 on resident ID numbers.

Every ``Identifier.system`` and ``Coding.system`` that CareNet writes for a Chinese identifier or
national code list is a constant here; nothing else spells these URIs (DESIGN.md, "Where each
object lives"). Where a WS/T standard assigns an OID we use it as ``urn:oid:``; where we know of
no published OID we use a CareNet URI under ``https://carenet.example.org/fhir/`` and say so, so a
region can map it to its own registry later without touching stored data twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from carenet.fhir.findings import Finding, Severity

CARENET_BASE = "https://carenet.example.org/fhir"

# --- Identifier systems (Identifier.system) -------------------------------------------------

#: 居民身份证号码 (GB 11643-1999). OID 2.16.156.10011.1.3 is the root WS/T 500-2016 shared
#: documents give the patient's resident ID (``<id root="2.16.156.10011.1.3" .../>``, "患者身份证号
#: 标识") in the 2.16.156.10011 arc of the National Health Commission.
RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"

#: 医保个人编号 / 医保卡号 issued by the medical-insurance bureau (no OID confirmed; CareNet URI).
MEDICAL_INSURANCE_NUMBER = f"{CARENET_BASE}/sid/medical-insurance-number"

#: 医师执业证书编码 (Physician Practising Certificate number).
PRACTITIONER_LICENCE = f"{CARENET_BASE}/sid/physician-practising-certificate"

#: 医师资格证书编码 (Physician Qualification Certificate number).
PRACTITIONER_QUALIFICATION = f"{CARENET_BASE}/sid/physician-qualification-certificate"

#: 护士执业证书编号 (Nurse Practising Certificate number).
NURSE_LICENCE = f"{CARENET_BASE}/sid/nurse-practising-certificate"

#: 执业药师注册证编号 (Licensed Pharmacist registration number).
PHARMACIST_REGISTRATION = f"{CARENET_BASE}/sid/licensed-pharmacist-registration"

#: 统一社会信用代码 (Unified Social Credit Code, GB 32100-2015) of any organization.
ORGANIZATION_USCC = f"{CARENET_BASE}/sid/uscc"

#: 医疗机构执业许可证登记号 (registration number of the Medical Institution Practising Licence).
MEDICAL_INSTITUTION_LICENCE = f"{CARENET_BASE}/sid/medical-institution-licence"

#: A department (科室) of an institution: value ``<institution USCC>-<department code>``.
DEPARTMENT_ID = f"{CARENET_BASE}/sid/department"

#: A site (Location) of an institution: value ``<institution USCC>-<site number>``.
LOCATION_ID = f"{CARENET_BASE}/sid/location"

#: A PractitionerRole: value ``<licence or registration number>@<institution USCC>``.
PRACTITIONER_ROLE_ID = f"{CARENET_BASE}/sid/practitioner-role"

# --- Code systems (Coding.system) -----------------------------------------------------------

#: 国家医保药品编码 (NHSA national drug codes, 医保药品分类与代码).
DRUG_CODE = f"{CARENET_BASE}/CodeSystem/nhsa-drug-code"

#: 行政区划代码 (GB/T 2260) of province, city and county.
REGION_CODE = f"{CARENET_BASE}/CodeSystem/gb-t-2260"

#: A Schedule's stable identifier (出诊排班), so that a second load finds it.
SCHEDULE_ID = f"{CARENET_BASE}/sid/schedule"

#: 医院等级 (医院分级管理办法): see ``HOSPITAL_LEVELS``.
HOSPITAL_LEVEL = f"{CARENET_BASE}/CodeSystem/hospital-level"

#: 机构类别: the kind of institution (health commission, general hospital, township health
#: centre, village clinic, ...), beside HL7's coarse organization-type.
INSTITUTION_KIND = f"{CARENET_BASE}/CodeSystem/institution-kind"

#: 诊疗科目 (医疗机构诊疗科目名录, 1994): codes of clinical departments and specialties.
CLINICAL_DEPARTMENT = f"{CARENET_BASE}/CodeSystem/clinical-department"

#: The kind of professional qualification a Practitioner.qualification records.
QUALIFICATION_KIND = f"{CARENET_BASE}/CodeSystem/qualification-kind"

#: Where a resource came from when it is not real care: ``demo`` (the demo region) or
#: ``bench`` (benchmark data); used in ``meta.tag`` so such data can be found and removed.
DATA_ORIGIN = f"{CARENET_BASE}/CodeSystem/data-origin"
# meta.tag stamped by the server on what staff write: the institution the data belongs to
# (access control: staff see their own institution's data). Clients cannot set or remove it.
OWNER_ORGANIZATION = f"{CARENET_BASE}/CodeSystem/owner-organization"

#: 医院等级 codes: grade 三/二/一级 and rank 甲/乙/丙 (医院分级管理办法, 1989). A grade without a rank
#: means "graded, not yet ranked"; ``unrated`` is for institutions outside the grading (村卫生室).
HOSPITAL_LEVELS: dict[str, tuple[str, str]] = {
    "3A": ("三级甲等", "Tertiary, grade A"),
    "3B": ("三级乙等", "Tertiary, grade B"),
    "3C": ("三级丙等", "Tertiary, grade C"),
    "3": ("三级", "Tertiary, not ranked"),
    "2A": ("二级甲等", "Secondary, grade A"),
    "2B": ("二级乙等", "Secondary, grade B"),
    "2C": ("二级丙等", "Secondary, grade C"),
    "2": ("二级", "Secondary, not ranked"),
    "1A": ("一级甲等", "Primary, grade A"),
    "1B": ("一级乙等", "Primary, grade B"),
    "1C": ("一级丙等", "Primary, grade C"),
    "1": ("一级", "Primary, not ranked"),
    "unrated": ("未定级", "Not graded"),
}

# --- ID-1: resident ID numbers --------------------------------------------------------------

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARACTERS = "10X98765432"
_FORMAT = re.compile(r"\d{17}[\dX]", re.ASCII)
_FORMAT_LOWER_X = re.compile(r"\d{17}x", re.ASCII)

#: The two-digit province codes of GB/T 2260 (including 71 台湾, 81 香港, 82 澳门).
PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 "
    "61 62 63 64 65 71 81 82".split()
)

#: The earliest birth year we accept; the older of the two RULES.md examples is born in 1880.
EARLIEST_BIRTH_YEAR = 1800

_DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


class ResidentIdParts(NamedTuple):
    """What a resident ID number says about its holder."""

    region_code: str
    birth_date: date
    sex: str  # FHIR AdministrativeGender: "male" | "female"


def resident_id_check_digit(first17: str) -> str:
    """The check character of a resident ID from its first 17 digits (RULES.md ID-1).

    Weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2; the weighted sum mod 11 = 0..10 maps to
    1 0 X 9 8 7 6 5 4 3 2 (GB 11643-1999, ISO 7064 MOD 11-2).
    """
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("a resident ID check digit needs exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARACTERS[total % 11]


def normalise_resident_id(value: str) -> str:
    """Surrounding whitespace removed and a lowercase check ``x`` made uppercase."""
    value = value.strip()
    return value[:-1] + "X" if value.endswith("x") else value


def validate_resident_id(
    value: str,
    *,
    known_region: Collection[str] | Callable[[str], bool] | None = None,
    today: date | None = None,
    expression: str | None = None,
) -> list[Finding]:
    """Check a resident ID number (居民身份证号码) against RULES.md ID-1 (GB 11643-1999).

    Structure: 6-digit region code (GB/T 2260) + 8-digit birth date + 3-digit sequence (odd
    male, even female) + check character. Findings, in this order:

    - ``ID-RESIDENT-FORMAT`` (error): not 17 digits followed by a digit or ``X``; nothing else is
      checked then.
    - ``ID-RESIDENT-CHECK-CHARACTER-CASE`` (error): the check character is a lowercase ``x``;
      the stored form uses ``X`` (see :func:`normalise_resident_id`).
    - ``ID-RESIDENT-REGION`` (error): the first two digits are no GB/T 2260 province.
    - ``ID-RESIDENT-REGION-UNKNOWN`` (warning): ``known_region`` is given and does not contain
      the region code. Only a warning: a number keeps the region code of where it was issued,
      and codes are withdrawn over time (440524 of the RULES.md example no longer exists).
    - ``ID-RESIDENT-BIRTH-DATE`` (error): digits 7-14 are not a calendar date on or after 1800.
    - ``ID-RESIDENT-BIRTH-DATE-FUTURE`` (error): the birth date is after ``today`` (default:
      today in Asia/Shanghai).
    - ``ID-RESIDENT-CHECK-DIGIT`` (error): the 18th character is not the ID-1 check character.

    An empty list means the number is valid.
    """
    findings: list[Finding] = []

    def add(code: str, zh: str, en: str, severity: Severity = "error") -> None:
        findings.append(Finding(code, severity, zh, en, expression))

    if _FORMAT_LOWER_X.fullmatch(value):
        add(
            "ID-RESIDENT-CHECK-CHARACTER-CASE",
            "身份证号码末位校验码应为大写X",
            "the check character of a resident ID number must be an uppercase X",
        )
        value = value[:-1] + "X"
    elif not _FORMAT.fullmatch(value):
        add(
            "ID-RESIDENT-FORMAT",
            f"身份证号码应为18位：17位数字加1位数字或X（实为{len(value)}位）",
            f"a resident ID number is 17 digits and a digit or X, 18 characters (got {len(value)})",
        )
        return findings

    region = value[:6]
    if region[:2] not in PROVINCE_CODES:
        add(
            "ID-RESIDENT-REGION",
            f"身份证号码的行政区划代码{region}不是有效的省级代码开头",
            f"region code {region} does not start with a GB/T 2260 province code",
        )
    elif known_region is not None:
        known = known_region(region) if callable(known_region) else region in known_region
        if not known:
            add(
                "ID-RESIDENT-REGION-UNKNOWN",
                f"身份证号码的行政区划代码{region}不在已知行政区划中",
                f"region code {region} is not a known administrative division",
                "warning",
            )

    birth = _birth_date(value)
    if birth is None:
        add(
            "ID-RESIDENT-BIRTH-DATE",
            f"身份证号码中的出生日期{value[6:14]}不是有效日期",
            f"birth date {value[6:14]} in the resident ID number is not a valid date",
        )
    else:
        if today is None:
            today = datetime.now(_DEFAULT_TZ).date()
        if birth > today:
            add(
                "ID-RESIDENT-BIRTH-DATE-FUTURE",
                f"身份证号码中的出生日期{birth.isoformat()}晚于今天",
                f"birth date {birth.isoformat()} in the resident ID number is in the future",
            )

    expected = resident_id_check_digit(value[:17])
    if value[17] != expected:
        add(
            "ID-RESIDENT-CHECK-DIGIT",
            f"身份证号码校验码错误：应为{expected}，实为{value[17]}",
            f"wrong check character in resident ID number: expected {expected}, got {value[17]}",
        )
    return findings


def parse_resident_id(value: str) -> ResidentIdParts:
    """Region code, birth date and sex (``male``/``female``) of a valid resident ID (ID-1).

    Raises ValueError naming the first error finding of :func:`validate_resident_id` when the
    number is not valid (a lowercase ``x`` counts as valid here after normalising).
    """
    value = normalise_resident_id(value)
    errors = [f for f in validate_resident_id(value) if f.is_error]
    if errors:
        raise ValueError(f"{errors[0].code}: {errors[0].message_en}")
    birth = _birth_date(value)
    assert birth is not None  # guaranteed by validate_resident_id
    return ResidentIdParts(value[:6], birth, "male" if int(value[16]) % 2 else "female")


def make_resident_id(region_code: str, birth_date: date, sequence: int) -> str:
    """A resident ID from its parts (sequence 0..999; odd for men, even for women), with ID-1's
    check character. Used by the demo and test-data generators."""
    if not (len(region_code) == 6 and region_code.isdigit()) or not 0 <= sequence <= 999:
        raise ValueError("region code must be 6 digits and sequence 0..999")
    first17 = f"{region_code}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + resident_id_check_digit(first17)


def _birth_date(value: str) -> date | None:
    try:
        birth = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None
    return birth if birth.year >= EARLIEST_BIRTH_YEAR else None


# --- 统一社会信用代码 (GB 32100-2015) -------------------------------------------------------

_USCC_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_character(first17: str) -> str:
    """The check character of a Unified Social Credit Code (GB 32100-2015, MOD 31)."""
    if len(first17) != 17 or any(c not in _USCC_CHARACTERS for c in first17):
        raise ValueError(
            "a USCC check character needs 17 characters of 0-9 and A-Y without I O S V Z"
        )
    total = sum(_USCC_CHARACTERS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARACTERS[(31 - total % 31) % 31]
