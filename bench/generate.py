"""Synthetic patient transaction Bundles for the benchmarks, one patient per Bundle.

Each Bundle holds one Patient (valid resident ID, RULES.md ID-1), that patient's doctor (one of
``BENCH_PRACTITIONERS`` fixed Practitioners, POSTed with ``ifNoneExist`` so it resolves to the
existing one), Encounters, Conditions (ICD-10), Observations (vital signs and labs with LOINC
codes and UCUM ``valueQuantity``, ``effectiveDateTime`` spread over the two years before
``OBSERVATION_WINDOW_END``), MedicationRequests (ATC) and an Appointment with the doctor on a
weekday around ``APPOINTMENT_DAY``. All references are ``urn:uuid:`` fullUrls inside the Bundle.

Load :func:`practitioner_bundle` once before the patient Bundles: if two concurrent Bundles both
created the same doctor, later ``ifNoneExist`` searches would match twice and fail.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any

from carenet.fhir import identifiers as ids

BENCH_TAG = {"system": ids.DATA_ORIGIN, "code": "bench"}
BENCH_PRACTITIONERS = 20
APPOINTMENT_DAY = date(2026, 11, 23)  # a Monday
APPOINTMENT_SPREAD_DAYS = 14  # appointments fall on weekdays within +-14 days of the day
OBSERVATION_WINDOW_END = datetime(2026, 11, 20, tzinfo=timezone(timedelta(hours=8)))
OBSERVATION_WINDOW_DAYS = 730
BENCH_COUNTIES = ("330122", "330127", "330324")

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
TZ = timezone(timedelta(hours=8))

# (LOINC, display, category, UCUM unit, low, high, decimals)
MEASUREMENTS: list[tuple[str, str, str, str, float, float, int]] = [
    ("8480-6", "Systolic blood pressure", "vital-signs", "mm[Hg]", 100, 175, 0),
    ("8462-4", "Diastolic blood pressure", "vital-signs", "mm[Hg]", 60, 105, 0),
    ("8867-4", "Heart rate", "vital-signs", "/min", 55, 105, 0),
    ("9279-1", "Respiratory rate", "vital-signs", "/min", 12, 22, 0),
    ("8310-5", "Body temperature", "vital-signs", "Cel", 36.0, 38.5, 1),
    ("29463-7", "Body weight", "vital-signs", "kg", 45, 95, 1),
    ("8302-2", "Body height", "vital-signs", "cm", 150, 185, 0),
    ("39156-5", "Body mass index (BMI) [Ratio]", "vital-signs", "kg/m2", 18, 32, 1),
    ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "laboratory", "mmol/L", 4.0, 12.0, 1),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "laboratory", "%", 5.0, 9.5, 1),
    (
        "14647-2",
        "Cholesterol [Moles/volume] in Serum or Plasma",
        "laboratory",
        "mmol/L",
        3.0,
        7.5,
        2,
    ),
    ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "laboratory", "umol/L", 45, 130, 0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "laboratory", "g/dL", 10.5, 17.0, 1),
]

# (ICD-10, Chinese name, ATC, drug and strength)
DIAGNOSES: list[tuple[str, str, str, str]] = [
    ("I10", "原发性高血压", "C08CA01", "苯磺酸氨氯地平片 5mg"),
    ("E11.9", "2型糖尿病", "A10BA02", "盐酸二甲双胍片 0.5g"),
    ("J06.9", "急性上呼吸道感染", "J01CA04", "阿莫西林胶囊 0.25g"),
    ("K29.7", "胃炎", "A02BC01", "奥美拉唑肠溶胶囊 20mg"),
    ("E78.5", "高脂血症", "C10AA05", "阿托伐他汀钙片 20mg"),
    ("I25.1", "动脉粥样硬化性心脏病", "B01AC06", "阿司匹林肠溶片 100mg"),
]

FAMILY_NAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
GIVEN_CHARACTERS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文红梅玉志海燕辉"


def practitioner_licence(index: int) -> str:
    """The fixed 医师执业证书编码 of bench practitioner ``index`` (0-based)."""
    return f"199330000{index:06d}"


def bench_practitioner(index: int) -> tuple[dict[str, Any], str]:
    """Practitioner resource and its ifNoneExist query; the same for every seed."""
    licence = practitioner_licence(index)
    family = FAMILY_NAMES[index % len(FAMILY_NAMES)]
    given = GIVEN_CHARACTERS[(index * 7) % len(GIVEN_CHARACTERS)]
    resource = {
        "resourceType": "Practitioner",
        "meta": {"tag": [dict(BENCH_TAG)]},
        "identifier": [{"system": ids.PRACTITIONER_LICENCE, "value": licence}],
        "active": True,
        "name": [{"use": "official", "text": family + given, "family": family, "given": [given]}],
        "gender": "male" if index % 2 else "female",
    }
    return resource, f"identifier={ids.PRACTITIONER_LICENCE}|{licence}"


def practitioner_bundle() -> dict[str, Any]:
    """All bench practitioners in one transaction; load it before :func:`patient_bundles`."""
    entries = []
    for i in range(BENCH_PRACTITIONERS):
        resource, query = bench_practitioner(i)
        entries.append(_entry(_uuid_for(f"bench-practitioner-{i}"), resource, query))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _uuid_for(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'https://carenet.example.org/bench/' + name)}"


def _entry(
    full_url: str, resource: dict[str, Any], if_none_exist: str | None = None
) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _ref(full_url: str) -> dict[str, str]:
    return {"reference": full_url}


class _PatientGenerator:
    def __init__(self, seed: int, resources_per_patient: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        self.resources_per_patient = max(8, resources_per_patient)
        self.resident_ids: set[str] = set()

    def full_url(self) -> str:
        return f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"

    def moment(self) -> datetime:
        seconds = self.rng.randrange(0, OBSERVATION_WINDOW_DAYS * 86400)
        return (OBSERVATION_WINDOW_END - timedelta(seconds=seconds)).replace(microsecond=0)

    def patient(self) -> dict[str, Any]:
        rng = self.rng
        sex = rng.choice(("male", "female"))
        while True:
            birth = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 365 * 88))
            seq = rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
            value = ids.make_resident_id(rng.choice(BENCH_COUNTIES), birth, seq)
            if value not in self.resident_ids:
                self.resident_ids.add(value)
                break
        family = rng.choice(FAMILY_NAMES)
        given = "".join(rng.choice(GIVEN_CHARACTERS) for _ in range(rng.choice((1, 2))))
        return {
            "resourceType": "Patient",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "identifier": [{"use": "official", "system": ids.RESIDENT_ID, "value": value}],
            "active": True,
            "name": [
                {"use": "official", "text": family + given, "family": family, "given": [given]}
            ],
            "telecom": [
                {"system": "phone", "value": f"139{rng.randrange(10**8):08d}", "use": "mobile"}
            ],
            "gender": sex,
            "birthDate": birth.isoformat(),
        }

    def bundle(self, index: int) -> dict[str, Any]:
        rng = self.rng
        total = self.resources_per_patient
        n_encounters = max(1, total // 8)
        n_observations = max(1, total - 3 - 3 * n_encounters)

        patient_url = self.full_url()
        doctor_index = index % BENCH_PRACTITIONERS
        doctor_url = self.full_url()
        doctor, doctor_query = bench_practitioner(doctor_index)
        entries = [_entry(patient_url, self.patient()), _entry(doctor_url, doctor, doctor_query)]

        for _ in range(n_encounters):
            start = self.moment()
            end = start + timedelta(minutes=rng.randrange(10, 40))
            icd, diagnosis, atc, drug = rng.choice(DIAGNOSES)
            encounter_url, condition_url = self.full_url(), self.full_url()
            entries.append(
                _entry(encounter_url, self.encounter(patient_url, doctor_url, start, end))
            )
            entries.append(
                _entry(
                    condition_url, self.condition(patient_url, encounter_url, start, icd, diagnosis)
                )
            )
            entries.append(
                _entry(
                    self.full_url(),
                    self.medication_request(
                        patient_url, encounter_url, doctor_url, condition_url, start, atc, drug
                    ),
                )
            )
        for _ in range(n_observations):
            entries.append(_entry(self.full_url(), self.observation(patient_url)))
        entries.append(_entry(self.full_url(), self.appointment(patient_url, doctor_url)))
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def encounter(
        self, patient: str, doctor: str, start: datetime, end: datetime
    ) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "subject": _ref(patient),
            "participant": [{"individual": _ref(doctor)}],
            "period": {"start": start.isoformat(), "end": end.isoformat()},
        }

    def condition(
        self, patient: str, encounter: str, start: datetime, icd: str, name: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {
                "coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]
            },
            "category": [
                {"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}
            ],
            "code": {"coding": [{"system": ICD10, "code": icd}], "text": name},
            "subject": _ref(patient),
            "encounter": _ref(encounter),
            "recordedDate": start.isoformat(),
        }

    def medication_request(
        self,
        patient: str,
        encounter: str,
        doctor: str,
        condition: str,
        start: datetime,
        atc: str,
        drug: str,
    ) -> dict[str, Any]:
        days = self.rng.choice((7, 14, 28))
        return {
            "resourceType": "MedicationRequest",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "status": "completed",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": atc}], "text": drug},
            "subject": _ref(patient),
            "encounter": _ref(encounter),
            "authoredOn": start.isoformat(),
            "requester": _ref(doctor),
            "reasonReference": [_ref(condition)],
            "dosageInstruction": [
                {
                    "text": "每日一次，每次一片，口服",
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": 1,
                                "unit": "片",
                                "system": UCUM,
                                "code": "{tbl}",
                            }
                        }
                    ],
                }
            ],
            "dispenseRequest": {
                "quantity": {"value": days, "unit": "片", "system": UCUM, "code": "{tbl}"},
                "expectedSupplyDuration": {"value": days, "unit": "d", "system": UCUM, "code": "d"},
            },
        }

    def observation(self, patient: str) -> dict[str, Any]:
        code, display, category, unit, low, high, decimals = self.rng.choice(MEASUREMENTS)
        value = round(self.rng.uniform(low, high), decimals)
        return {
            "resourceType": "Observation",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
            "code": {
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": display,
            },
            "subject": _ref(patient),
            "effectiveDateTime": self.moment().isoformat(),
            "valueQuantity": {
                "value": int(value) if decimals == 0 else value,
                "unit": unit,
                "system": UCUM,
                "code": unit,
            },
        }

    def appointment(self, patient: str, doctor: str) -> dict[str, Any]:
        while True:
            day = APPOINTMENT_DAY + timedelta(
                days=self.rng.randrange(-APPOINTMENT_SPREAD_DAYS, APPOINTMENT_SPREAD_DAYS + 1)
            )
            if day.weekday() < 5:
                break
        slot = self.rng.randrange(0, 48)  # 10-minute slots from 08:00 to 16:00 Beijing time
        start = datetime(day.year, day.month, day.day, 8, tzinfo=TZ) + timedelta(minutes=10 * slot)
        end = start + timedelta(minutes=10)
        return {
            "resourceType": "Appointment",
            "meta": {"tag": [dict(BENCH_TAG)]},
            "status": "booked",
            "description": "复诊",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "minutesDuration": 10,
            "participant": [
                {"actor": _ref(patient), "required": "required", "status": "accepted"},
                {"actor": _ref(doctor), "required": "required", "status": "accepted"},
            ],
        }


def patient_bundles(
    n_patients: int, *, seed: int, resources_per_patient: int = 20
) -> Iterator[dict[str, Any]]:
    """``n_patients`` transaction Bundles of about ``resources_per_patient`` entries each
    (at least 8: Patient, doctor, one Encounter + Condition + MedicationRequest, Observations,
    an Appointment). Deterministic for a seed."""
    generator = _PatientGenerator(seed, resources_per_patient)
    for index in range(n_patients):
        yield generator.bundle(index)
