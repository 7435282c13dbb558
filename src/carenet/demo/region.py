"""The demo region as FHIR R4 transaction Bundles: 浙江省 with two cities and three counties.

What it builds (all deterministic for a seed):

- the health-administration hierarchy (省/市 卫生健康委员会, 县 卫生健康局) as Organizations of
  type ``govt`` linked by ``partOf``;
- institutions of every level: two 三级甲等 city hospitals, three 二级甲等 county hospitals, one
  乡镇卫生院 per county and three 村卫生室 per township. Each is an Organization with two
  ``type`` entries: its kind (HL7 ``prov`` plus CareNet ``institution-kind``) and its 医院等级 in
  the CareNet ``hospital-level`` CodeSystem (FHIR R4 has no level element, and ``type`` is 0..*,
  so the level is a second type rather than an extension). Hospitals and township centres are
  ``partOf`` their health commission; village clinics ``partOf`` their township centre
  (乡村一体化管理);
- departments (科室) as Organizations of type ``dept`` ``partOf`` their institution, coded by the
  医疗机构诊疗科目名录, and one Location per institution;
- 40+ Practitioners (doctors, nurses, pharmacists) with PractitionerRoles, some at two
  institutions (多点执业);
- 200+ Patients with ID-1-valid resident IDs of their county, Chinese names, phone, address with
  the GB/T 2260 code in the ``address-division-code`` extension, and their township health centre
  as ``managingOrganization``;
- the small CareNet CodeSystems these resources use.

Every entry is a POST with ``ifNoneExist`` on a stable identifier (or ``url`` for CodeSystems),
and references are ``urn:uuid:`` fullUrls inside the same Bundle. A Bundle that refers to a
resource of an earlier Bundle carries that resource again with the same ``ifNoneExist``, so each
Bundle loads on its own, in any order, and loading twice creates nothing new. Institution names
and all numbers are invented; any likeness to a real institution or person is chance.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from carenet.fhir import identifiers as ids
from carenet.fhir.regions import address_division_extension, division, lineage

MAX_BUNDLE_ENTRIES = 500
PATIENTS_PER_COUNTY = 80
PATIENTS_PER_BUNDLE = 120

ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
LOCATION_PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
DEMO_TAG = {"system": ids.DATA_ORIGIN, "code": "demo", "display": "演示数据 demo data"}

#: CareNet 机构类别 codes used in the demo.
INSTITUTION_KINDS: dict[str, tuple[str, str]] = {
    "health-commission": ("卫生健康行政部门", "Health administration"),
    "general-hospital": ("综合医院", "General hospital"),
    "township-health-centre": ("乡镇卫生院", "Township health centre"),
    "village-clinic": ("村卫生室", "Village clinic"),
}

#: 医疗机构诊疗科目名录 (1994) codes of the departments in the demo.
DEPARTMENTS: dict[str, tuple[str, str]] = {
    "01": ("预防保健科", "Preventive care"),
    "02": ("全科医疗科", "General practice"),
    "03": ("内科", "Internal medicine"),
    "03.04": ("心血管内科专业", "Cardiology"),
    "03.07": ("内分泌专业", "Endocrinology"),
    "04": ("外科", "Surgery"),
    "05": ("妇产科", "Obstetrics and gynaecology"),
    "07": ("儿科", "Paediatrics"),
    "20": ("急诊医学科", "Emergency medicine"),
}

QUALIFICATION_KINDS: dict[str, tuple[str, str]] = {
    "physician": ("执业医师", "Licensed physician"),
    "nurse": ("注册护士", "Registered nurse"),
    "pharmacist": ("执业药师", "Licensed pharmacist"),
}

_TERTIARY_DEPARTMENTS = ["03", "03.04", "03.07", "04", "05", "07", "20", "02"]
_SECONDARY_DEPARTMENTS = ["03", "04", "05", "07", "20", "02"]
_TOWNSHIP_DEPARTMENTS = ["02", "01"]

FAMILY_NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余叶程苏吕魏丁沈任姚卢傅钟姜崔谭陆汪范金石廖贾夏韦方"
# Rough shares (per mille) of the 2020 census surname ranking, then a flat tail.
FAMILY_WEIGHTS = [72, 70, 66, 54, 45, 31, 23, 20, 19, 18, 17, 15, 12, 12, 11, 10, 10, 9, 9, 8] + [
    5
] * (len(FAMILY_NAMES) - 20)
GIVEN_CHARACTERS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文红梅玉志海燕辉鹏飞宇浩然欣怡子涵雨萱思远佳琪晨博俊婷雪梦嘉瑶晓东"

#: Invented places for townships, villages and streets (not claimed to be real).
_TOWNSHIPS = {"330122": "分水镇", "330127": "威坪镇", "330324": "岩头镇"}
_VILLAGES = ["青山村", "石桥村", "上溪村"]
#: Ages are counted back from a fixed day so that a seed gives the same data in any year.
_AGE_REFERENCE = date(2026, 1, 1)
_STREETS = ["人民路", "解放路", "新安路", "中山路", "文化路", "迎春路"]


@dataclass
class _Entry:
    full_url: str
    resource: dict[str, Any]
    if_none_exist: str

    def to_bundle_entry(self) -> dict[str, Any]:
        return {
            "fullUrl": self.full_url,
            "resource": self.resource,
            "request": {
                "method": "POST",
                "url": self.resource["resourceType"],
                "ifNoneExist": self.if_none_exist,
            },
        }


@dataclass
class _Institution:
    entry: _Entry
    uscc: str
    name: str
    county: str  # GB/T 2260 code of where it sits (county or city)
    location: _Entry | None = None
    departments: dict[str, _Entry] = field(default_factory=dict)


class _RegionBuilder:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
        self.entries: dict[str, _Entry] = {}
        self.used_ids: set[str] = set()
        self.used_numbers: set[str] = set()

    # -- primitives ---------------------------------------------------------------------------

    def full_url(self) -> str:
        return f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"

    def add(self, resource: dict[str, Any], if_none_exist: str) -> _Entry:
        resource.setdefault("meta", {"tag": [dict(DEMO_TAG)]})
        entry = _Entry(self.full_url(), resource, if_none_exist)
        self.entries[entry.full_url] = entry
        return entry

    def digits(self, n: int) -> str:
        while True:
            value = "".join(self.rng.choice("0123456789") for _ in range(n))
            if value not in self.used_numbers:
                self.used_numbers.add(value)
                return value

    def uscc(self, prefix: str, region: str) -> str:
        # 登记管理部门 + 机构类别 (2 chars), 登记管理机关行政区划码 (6), 主体标识码 (9), 校验码 (1).
        first17 = f"{prefix}{region}{self.digits(8)}"
        first17 += self.rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY")
        return first17 + ids.uscc_check_character(first17)

    def resident_id(self, region: str, birth: date, sex: str) -> str:
        while True:
            seq = self.rng.randrange(0, 1000)
            if (seq % 2 == 1) != (sex == "male"):
                seq = (seq + 1) % 1000
            value = ids.make_resident_id(region, birth, seq)
            if value not in self.used_ids:
                self.used_ids.add(value)
                return value

    def person_name(self) -> dict[str, Any]:
        # Weighted like the real distribution: the commonest surnames (王 李 张 刘 陈 ...)
        # are far more frequent than the tail, so a search for 王 finds many.
        family = self.rng.choices(FAMILY_NAMES, weights=FAMILY_WEIGHTS)[0]
        given = "".join(self.rng.choice(GIVEN_CHARACTERS) for _ in range(self.rng.choice((1, 2))))
        return {"use": "official", "text": family + given, "family": family, "given": [given]}

    def mobile(self) -> dict[str, Any]:
        return {
            "system": "phone",
            "value": f"1{self.rng.choice('3578')}{self.digits(9)}",
            "use": "mobile",
        }

    def birth_date(self, oldest: int, youngest: int) -> date:
        start = _AGE_REFERENCE - timedelta(days=365 * oldest)
        return start + timedelta(days=self.rng.randrange(0, 365 * (oldest - youngest)))

    def address(self, county: str, line: str) -> dict[str, Any]:
        chain = lineage(county)
        names = [d.name for d in chain]
        address: dict[str, Any] = {
            "extension": [address_division_extension(county)],
            "use": "home",
            "type": "physical",
            "text": "".join(names) + line,
            "line": [line],
            "city": names[1] if len(names) > 1 else names[0],
        }
        if len(names) > 2:
            address["district"] = names[2]
        address["state"] = names[0]
        address["country"] = "CN"
        return address

    # -- code systems ---------------------------------------------------------------------------

    def code_system(
        self, url: str, name: str, title: str, concepts: dict[str, tuple[str, str]]
    ) -> None:
        self.add(
            {
                "resourceType": "CodeSystem",
                "url": url,
                "version": "1.0.0",
                "name": name,
                "title": title,
                "status": "active",
                "publisher": "CareNet",
                "caseSensitive": True,
                "content": "complete",
                "count": len(concepts),
                "concept": [
                    {"code": code, "display": zh, "designation": [{"language": "en", "value": en}]}
                    for code, (zh, en) in concepts.items()
                ],
            },
            f"url={url}",
        )

    # -- organizations --------------------------------------------------------------------------

    def organization(
        self,
        name: str,
        county: str,
        kind: str,
        *,
        uscc_prefix: str,
        level: str | None = None,
        part_of: _Entry | None = None,
        licence: bool = True,
    ) -> _Institution:
        uscc = self.uscc(uscc_prefix, county)
        identifier = [{"use": "official", "system": ids.ORGANIZATION_USCC, "value": uscc}]
        if licence:
            # Synthetic 登记号: 8 digits, the region code, 机构类别 A1/B1/J1, a 3-digit serial.
            category = {"general-hospital": "A1", "township-health-centre": "B1"}.get(kind, "J1")
            identifier.append(
                {
                    "system": ids.MEDICAL_INSTITUTION_LICENCE,
                    "value": f"{self.digits(8)}{county}{category}{self.digits(3)}",
                }
            )
        hl7_type = "govt" if kind == "health-commission" else "prov"
        zh, _en = INSTITUTION_KINDS[kind]
        types: list[dict[str, Any]] = [
            {
                "coding": [
                    {"system": ORGANIZATION_TYPE, "code": hl7_type},
                    {"system": ids.INSTITUTION_KIND, "code": kind, "display": zh},
                ],
                "text": zh,
            }
        ]
        if level is not None:
            level_zh = ids.HOSPITAL_LEVELS[level][0]
            types.append(
                {
                    "coding": [{"system": ids.HOSPITAL_LEVEL, "code": level, "display": level_zh}],
                    "text": level_zh,
                }
            )
        resource: dict[str, Any] = {
            "resourceType": "Organization",
            "identifier": identifier,
            "active": True,
            "type": types,
            "name": name,
            "telecom": [
                {"system": "phone", "value": f"0{self.digits(3)}-{self.digits(8)}", "use": "work"}
            ],
            "address": [
                {
                    **self.address(
                        county, f"{self.rng.choice(_STREETS)}{self.rng.randrange(1, 300)}号"
                    ),
                    "use": "work",
                }
            ],
        }
        if part_of is not None:
            resource["partOf"] = {
                "reference": part_of.full_url,
                "display": part_of.resource["name"],
            }
        entry = self.add(resource, f"identifier={ids.ORGANIZATION_USCC}|{uscc}")
        return _Institution(entry, uscc, name, county)

    def departments(self, inst: _Institution, codes: list[str]) -> None:
        for code in codes:
            zh, en = DEPARTMENTS[code]
            value = f"{inst.uscc}-{code}"
            inst.departments[code] = self.add(
                {
                    "resourceType": "Organization",
                    "identifier": [{"system": ids.DEPARTMENT_ID, "value": value}],
                    "active": True,
                    "type": [
                        {"coding": [{"system": ORGANIZATION_TYPE, "code": "dept"}], "text": "科室"},
                        {
                            "coding": [
                                {"system": ids.CLINICAL_DEPARTMENT, "code": code, "display": zh}
                            ],
                            "text": zh,
                        },
                    ],
                    "name": f"{inst.name}{zh}",
                    "alias": [en],
                    "partOf": {"reference": inst.entry.full_url, "display": inst.name},
                },
                f"identifier={ids.DEPARTMENT_ID}|{value}",
            )

    def site(self, inst: _Institution) -> None:
        value = f"{inst.uscc}-01"
        inst.location = self.add(
            {
                "resourceType": "Location",
                "identifier": [{"system": ids.LOCATION_ID, "value": value}],
                "status": "active",
                "name": f"{inst.name}院区",
                "mode": "instance",
                "physicalType": {
                    "coding": [
                        {"system": LOCATION_PHYSICAL_TYPE, "code": "bu", "display": "Building"}
                    ]
                },
                "address": inst.entry.resource["address"][0],
                "managingOrganization": {"reference": inst.entry.full_url, "display": inst.name},
            },
            f"identifier={ids.LOCATION_ID}|{value}",
        )

    # -- people ---------------------------------------------------------------------------------

    def practitioner(self, role: str, county: str) -> tuple[_Entry, str]:
        sex = self.rng.choice(("male", "female"))
        birth = self.birth_date(60, 26)
        system, qualification = {
            "doctor": (ids.PRACTITIONER_LICENCE, "physician"),
            "nurse": (ids.NURSE_LICENCE, "nurse"),
            "pharmacist": (ids.PHARMACIST_REGISTRATION, "pharmacist"),
        }[role]
        licence = f"1{county[:2]}{county}{self.digits(6)}"
        resource: dict[str, Any] = {
            "resourceType": "Practitioner",
            "identifier": [
                {"use": "official", "system": system, "value": licence},
                {"system": ids.RESIDENT_ID, "value": self.resident_id(county, birth, sex)},
            ],
            "active": True,
            "name": [self.person_name()],
            "telecom": [self.mobile()],
            "gender": sex,
            "birthDate": birth.isoformat(),
            "qualification": [
                {
                    "identifier": (
                        [
                            {
                                "system": ids.PRACTITIONER_QUALIFICATION,
                                "value": f"{birth.year + 24}{self.digits(11)}",
                            }
                        ]
                        if role == "doctor"
                        else []
                    ),
                    "code": {
                        "coding": [
                            {
                                "system": ids.QUALIFICATION_KIND,
                                "code": qualification,
                                "display": QUALIFICATION_KINDS[qualification][0],
                            }
                        ],
                        "text": QUALIFICATION_KINDS[qualification][0],
                    },
                }
            ],
        }
        if not resource["qualification"][0]["identifier"]:
            del resource["qualification"][0]["identifier"]
        return self.add(resource, f"identifier={system}|{licence}"), licence

    def practitioner_role(
        self,
        practitioner: _Entry,
        licence: str,
        role: str,
        inst: _Institution,
        department: str | None,
    ) -> None:
        value = f"{licence}@{inst.uscc}"
        name = practitioner.resource["name"][0]["text"]
        resource: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": ids.PRACTITIONER_ROLE_ID, "value": value}],
            "active": True,
            "practitioner": {"reference": practitioner.full_url, "display": name},
            "organization": {"reference": inst.entry.full_url, "display": inst.name},
            "code": [{"coding": [{"system": PRACTITIONER_ROLE, "code": role}]}],
        }
        if department is not None:
            zh = DEPARTMENTS[department][0]
            resource["specialty"] = [
                {
                    "coding": [
                        {"system": ids.CLINICAL_DEPARTMENT, "code": department, "display": zh}
                    ],
                    "text": zh,
                }
            ]
        if inst.location is not None:
            resource["location"] = [{"reference": inst.location.full_url}]
        self.add(resource, f"identifier={ids.PRACTITIONER_ROLE_ID}|{value}")

    def patient(self, county: str, township: _Institution) -> _Entry:
        sex = self.rng.choice(("male", "female"))
        birth = self.birth_date(90, 0)
        resident_id = self.resident_id(county, birth, sex)
        identifier = [
            {
                "use": "official",
                "system": ids.RESIDENT_ID,
                "value": resident_id,
                "type": {"text": "居民身份证"},
            }
        ]
        if self.rng.random() < 0.9:
            identifier.append(
                {
                    "system": ids.MEDICAL_INSURANCE_NUMBER,
                    "value": f"{county}{self.digits(10)}",
                    "type": {"text": "医保个人编号"},
                }
            )
        line = f"{_TOWNSHIPS[county]}{self.rng.choice(_VILLAGES)}{self.rng.randrange(1, 200)}号"
        return self.add(
            {
                "resourceType": "Patient",
                "identifier": identifier,
                "active": True,
                "name": [self.person_name()],
                "telecom": [self.mobile()],
                "gender": sex,
                "birthDate": birth.isoformat(),
                "address": [self.address(county, line)],
                "managingOrganization": {
                    "reference": township.entry.full_url,
                    "display": township.name,
                },
            },
            f"identifier={ids.RESIDENT_ID}|{resident_id}",
        )


def _build(seed: int) -> tuple[list[_Entry], list[_Entry], dict[str, _Entry]]:
    b = _RegionBuilder(seed)
    b.code_system(
        ids.HOSPITAL_LEVEL, "HospitalLevel", "医院等级 Hospital level", ids.HOSPITAL_LEVELS
    )
    b.code_system(
        ids.INSTITUTION_KIND, "InstitutionKind", "机构类别 Institution kind", INSTITUTION_KINDS
    )
    b.code_system(
        ids.CLINICAL_DEPARTMENT, "ClinicalDepartment", "诊疗科目 Clinical department", DEPARTMENTS
    )
    b.code_system(
        ids.QUALIFICATION_KIND,
        "QualificationKind",
        "执业资格 Qualification kind",
        QUALIFICATION_KINDS,
    )

    gov = "11"  # 机关 (登记管理部门 1, 类别 1)
    public = "12"  # 事业单位
    commissions: dict[str, _Institution] = {}
    province = division("330000")
    commissions["330000"] = b.organization(
        f"{province.name}卫生健康委员会",
        "330000",
        "health-commission",
        uscc_prefix=gov,
        licence=False,
    )
    for city in ("330100", "330300"):
        commissions[city] = b.organization(
            f"{division(city).name}卫生健康委员会",
            city,
            "health-commission",
            uscc_prefix=gov,
            part_of=commissions["330000"].entry,
            licence=False,
        )
    counties = ("330122", "330127", "330324")
    for county in counties:
        d = division(county)
        commissions[county] = b.organization(
            f"{d.name}卫生健康局",
            county,
            "health-commission",
            uscc_prefix=gov,
            part_of=commissions[d.parent or ""].entry,
            licence=False,
        )

    tertiary = [
        b.organization(
            f"{division(c).name}中心医院",
            c,
            "general-hospital",
            uscc_prefix=public,
            level="3A",
            part_of=commissions[c].entry,
        )
        for c in ("330100", "330300")
    ]
    secondary = [
        b.organization(
            f"{division(c).name}人民医院",
            c,
            "general-hospital",
            uscc_prefix=public,
            level="2A",
            part_of=commissions[c].entry,
        )
        for c in counties
    ]
    townships = {
        c: b.organization(
            f"{division(c).name}{_TOWNSHIPS[c]}卫生院",
            c,
            "township-health-centre",
            uscc_prefix=public,
            level="1",
            part_of=commissions[c].entry,
        )
        for c in counties
    }
    villages = [
        b.organization(
            f"{_TOWNSHIPS[c]}{v}卫生室",
            c,
            "village-clinic",
            uscc_prefix="52",
            level="unrated",
            part_of=townships[c].entry,
        )
        for c in counties
        for v in _VILLAGES
    ]
    for inst in tertiary:
        b.departments(inst, _TERTIARY_DEPARTMENTS)
    for inst in secondary:
        b.departments(inst, _SECONDARY_DEPARTMENTS)
    for inst in townships.values():
        b.departments(inst, _TOWNSHIP_DEPARTMENTS)
    for inst in [*tertiary, *secondary, *townships.values(), *villages]:
        b.site(inst)

    # Staff: (institution, doctors, nurses, pharmacists). Doctors rotate over the departments.
    staffing = [(i, 7, 2, 1) for i in tertiary] + [(i, 4, 1, 1) for i in secondary]
    staffing += [(i, 2, 1, 0) for i in townships.values()]
    doctors: dict[str, list[tuple[_Entry, str, str]]] = {}
    for inst, n_doctors, n_nurses, n_pharmacists in staffing:
        clinical = [c for c in inst.departments if c != "01"]
        staff = ["doctor"] * n_doctors + ["nurse"] * n_nurses + ["pharmacist"] * n_pharmacists
        for k, role in enumerate(staff):
            practitioner, licence = b.practitioner(role, inst.county)
            department = None if role == "pharmacist" else clinical[k % len(clinical)]
            b.practitioner_role(practitioner, licence, role, inst, department)
            if role == "doctor":
                doctors.setdefault(inst.uscc, []).append(
                    (practitioner, licence, department or "02")
                )

    # 多点执业: city specialists also practise at a county hospital, county doctors at the
    # township centre, township GPs at a village clinic.
    def second_site(
        source: list[_Institution], target: list[_Institution], department: str | None
    ) -> None:
        for k, inst in enumerate(target):
            practitioner, licence, home_department = doctors[source[k % len(source)].uscc][
                k // len(source)
            ]
            b.practitioner_role(
                practitioner, licence, "doctor", inst, department or home_department
            )

    second_site(tertiary, secondary, None)
    second_site(secondary, list(townships.values()), "02")
    second_site(list(townships.values()), villages[:: len(_VILLAGES)], "02")

    structure = list(b.entries.values())
    patients: list[_Entry] = []
    for county in counties:
        for _ in range(PATIENTS_PER_COUNTY):
            patients.append(b.patient(county, townships[county]))
    return structure, patients, b.entries


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:"):
            yield ref
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _references(value)


def _with_dependencies(entries: Iterable[_Entry], registry: dict[str, _Entry]) -> list[_Entry]:
    """The entries plus every entry they refer to (transitively), dependencies first."""
    ordered: dict[str, _Entry] = {}

    def visit(entry: _Entry) -> None:
        if entry.full_url in ordered:
            return
        for ref in _references(entry.resource):
            visit(registry[ref])
        ordered[entry.full_url] = entry

    for entry in entries:
        visit(entry)
    return list(ordered.values())


def _transaction(entries: list[_Entry]) -> dict[str, Any]:
    if len(entries) > MAX_BUNDLE_ENTRIES:
        raise ValueError(
            f"a demo bundle would have {len(entries)} entries (max {MAX_BUNDLE_ENTRIES})"
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [e.to_bundle_entry() for e in entries],
    }


def demo_bundles(seed: int = 2026) -> list[dict[str, Any]]:
    """The demo region as transaction Bundles: first the region's structure (code systems,
    organizations, departments, sites, staff), then its residents in chunks. Same seed, same
    Bundles, byte for byte."""
    structure, patients, registry = _build(seed)
    bundles = [_transaction(_with_dependencies(structure, registry))]
    for start in range(0, len(patients), PATIENTS_PER_BUNDLE):
        chunk = patients[start : start + PATIENTS_PER_BUNDLE]
        bundles.append(_transaction(_with_dependencies(chunk, registry)))
    return bundles


def summary(bundles: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many distinct resources of each type the Bundles hold. A resource carried again in a
    later Bundle (same ``ifNoneExist``) counts once."""
    seen: set[tuple[str, str]] = set()
    counts: Counter[str] = Counter()
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            resource_type = entry["resource"]["resourceType"]
            key = (resource_type, entry.get("request", {}).get("ifNoneExist") or entry["fullUrl"])
            if key not in seen:
                seen.add(key)
                counts[resource_type] += 1
    return dict(sorted(counts.items()))
