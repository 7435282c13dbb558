"""The benchmark data generator: well-formed transactions, resolvable references, counts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from bench.generate import (
    APPOINTMENT_DAY,
    BENCH_PRACTITIONERS,
    OBSERVATION_WINDOW_DAYS,
    OBSERVATION_WINDOW_END,
    patient_bundles,
    practitioner_bundle,
)

from carenet.fhir import identifiers as ids
from carenet.fhir.identifiers import parse_resident_id, validate_resident_id


def references(node):
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def test_bundles_are_transactions_with_resolvable_references() -> None:
    for bundle in patient_bundles(30, seed=1):
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        full_urls = [e["fullUrl"] for e in bundle["entry"]]
        assert len(set(full_urls)) == len(full_urls)
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"] == {
                "method": "POST",
                "url": entry["resource"]["resourceType"],
                **(
                    {"ifNoneExist": entry["request"]["ifNoneExist"]}
                    if entry["resource"]["resourceType"] == "Practitioner"
                    else {}
                ),
            }
            for ref in references(entry["resource"]):
                assert ref in full_urls


def test_counts_per_bundle_match_resources_per_patient() -> None:
    for per_patient in (8, 20, 40):
        bundles = list(patient_bundles(5, seed=3, resources_per_patient=per_patient))
        assert len(bundles) == 5
        for bundle in bundles:
            types = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
            assert len(bundle["entry"]) == per_patient
            assert (
                types["Patient"] == 1 and types["Practitioner"] == 1 and types["Appointment"] == 1
            )
            assert types["Encounter"] == types["Condition"] == types["MedicationRequest"] >= 1
            assert types["Observation"] >= 1


def test_patients_have_valid_unique_resident_ids() -> None:
    values = []
    for bundle in patient_bundles(300, seed=5):
        patient = bundle["entry"][0]["resource"]
        value = patient["identifier"][0]["value"]
        assert patient["identifier"][0]["system"] == ids.RESIDENT_ID
        assert validate_resident_id(value) == []
        assert parse_resident_id(value).sex == patient["gender"]
        values.append(value)
    assert len(set(values)) == len(values)


def test_observations_carry_loinc_and_quantities_within_the_two_year_window() -> None:
    low = OBSERVATION_WINDOW_END.timestamp() - OBSERVATION_WINDOW_DAYS * 86400
    for bundle in patient_bundles(20, seed=9):
        for entry in bundle["entry"]:
            obs = entry["resource"]
            if obs["resourceType"] != "Observation":
                continue
            assert obs["code"]["coding"][0]["system"] == "http://loinc.org"
            assert isinstance(obs["valueQuantity"]["value"], int | float)
            assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
            moment = datetime.fromisoformat(obs["effectiveDateTime"]).timestamp()
            assert low <= moment <= OBSERVATION_WINDOW_END.timestamp()


def test_practitioners_have_appointments_on_the_benchmark_day() -> None:
    on_day = Counter()
    for bundle in patient_bundles(400, seed=11):
        doctor = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner")
        appointment = next(
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
        )
        assert {p["actor"]["reference"] for p in appointment["participant"]} >= {doctor["fullUrl"]}
        assert appointment["start"] < appointment["end"]
        if appointment["start"].startswith(APPOINTMENT_DAY.isoformat()):
            on_day[doctor["request"]["ifNoneExist"]] += 1
    assert len(on_day) >= BENCH_PRACTITIONERS // 2


def test_practitioner_bundle_holds_every_bench_practitioner_once() -> None:
    bundle = practitioner_bundle()
    queries = [e["request"]["ifNoneExist"] for e in bundle["entry"]]
    assert len(set(queries)) == len(queries) == BENCH_PRACTITIONERS
    assert bundle == practitioner_bundle()


def test_generation_is_deterministic_for_a_seed() -> None:
    assert json.dumps(list(patient_bundles(3, seed=42))) == json.dumps(
        list(patient_bundles(3, seed=42))
    )
    assert json.dumps(list(patient_bundles(3, seed=42))) != json.dumps(
        list(patient_bundles(3, seed=43))
    )


def test_every_bench_bundle_and_resource_validates_without_errors() -> None:
    from carenet.fhir.validation import validate_resource

    for bundle in [practitioner_bundle(), *patient_bundles(10, seed=13, resources_per_patient=30)]:
        assert [i for i in validate_resource(bundle) if i.severity in ("error", "fatal")] == []
        for entry in bundle["entry"]:
            issues = validate_resource(entry["resource"])
            assert [i.to_fhir() for i in issues if i.severity in ("error", "fatal")] == []
