"""The demo region generator: counts, valid resident IDs, resolvable references, determinism."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from carenet.demo.region import MAX_BUNDLE_ENTRIES, demo_bundles, summary
from carenet.fhir import identifiers as ids
from carenet.fhir.identifiers import parse_resident_id, validate_resident_id
from carenet.fhir.regions import (
    ADDRESS_DIVISION_EXTENSION,
    DIVISIONS,
    address_division_extension,
    children,
    is_known_division,
    lineage,
)


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    return demo_bundles()


def resources(bundles: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    """Distinct resources of a type (a resource carried again in a later bundle counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    for bundle in bundles:
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == resource_type:
                seen.setdefault(entry["request"]["ifNoneExist"], entry["resource"])
    return list(seen.values())


def type_codes(org: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for t in org.get("type", []) for c in t["coding"] if c["system"] == system]


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def test_bundles_are_transactions_of_at_most_500_post_entries_with_if_none_exist(bundles) -> None:
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        assert 0 < len(bundle["entry"]) <= MAX_BUNDLE_ENTRIES
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            request = entry["request"]
            assert request["method"] == "POST"
            assert request["url"] == entry["resource"]["resourceType"]
            assert request["ifNoneExist"]


def test_every_reference_resolves_to_a_full_url_in_its_own_bundle(bundles) -> None:
    for bundle in bundles:
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        for entry in bundle["entry"]:
            for ref in references(entry["resource"]):
                assert ref in full_urls, (
                    f"{entry['resource']['resourceType']} refers to {ref} outside its bundle"
                )


def test_a_resource_carried_in_two_bundles_is_identical_under_the_same_if_none_exist(
    bundles,
) -> None:
    by_query: dict[str, tuple[str, str]] = {}
    for bundle in bundles:
        for entry in bundle["entry"]:
            body = (entry["fullUrl"], json.dumps(entry["resource"], sort_keys=True))
            assert by_query.setdefault(entry["request"]["ifNoneExist"], body) == body


def test_if_none_exist_queries_are_unique_per_resource_type(bundles) -> None:
    for bundle in bundles:
        queries = Counter(
            (e["request"]["url"], e["request"]["ifNoneExist"]) for e in bundle["entry"]
        )
        assert max(queries.values()) == 1


def test_counts_meet_the_minimums(bundles) -> None:
    counts = summary(bundles)
    assert counts["Patient"] >= 200
    assert counts["Practitioner"] >= 40
    assert counts["PractitionerRole"] > counts["Practitioner"]
    orgs = resources(bundles, "Organization")
    kinds = Counter(k for o in orgs for k in type_codes(o, ids.INSTITUTION_KIND))
    levels = Counter(k for o in orgs for k in type_codes(o, ids.HOSPITAL_LEVEL))
    assert kinds["health-commission"] == 6
    assert levels["3A"] >= 2
    assert levels["2A"] + levels["2B"] + levels["2C"] + levels["2"] >= 3
    assert kinds["township-health-centre"] == 3
    assert kinds["village-clinic"] >= 6
    assert counts["Location"] == sum(kinds[k] for k in kinds if k != "health-commission")
    assert counts["CodeSystem"] == 4


def test_village_clinics_number_at_least_two_per_township(bundles) -> None:
    orgs = resources(bundles, "Organization")
    by_url = {}
    for bundle in bundles:
        for e in bundle["entry"]:
            by_url[e["fullUrl"]] = e["resource"]
    townships = Counter(
        by_url[o["partOf"]["reference"]]["name"]
        for o in orgs
        if "village-clinic" in type_codes(o, ids.INSTITUTION_KIND)
    )
    assert len(townships) == 3 and min(townships.values()) >= 2


def test_commissions_form_a_province_city_county_hierarchy(bundles) -> None:
    by_url = {e["fullUrl"]: e["resource"] for b in bundles for e in b["entry"]}
    commissions = [
        o
        for o in resources(bundles, "Organization")
        if "govt" in type_codes(o, "http://terminology.hl7.org/CodeSystem/organization-type")
    ]
    depth = Counter()
    for org in commissions:
        n, node = 0, org
        while "partOf" in node:
            node, n = by_url[node["partOf"]["reference"]], n + 1
        depth[n] += 1
    assert depth == {0: 1, 1: 2, 2: 3}


def test_departments_are_part_of_a_hospital(bundles) -> None:
    by_url = {e["fullUrl"]: e["resource"] for b in bundles for e in b["entry"]}
    departments = [
        o
        for o in resources(bundles, "Organization")
        if "dept" in type_codes(o, "http://terminology.hl7.org/CodeSystem/organization-type")
    ]
    assert {c for d in departments for c in type_codes(d, ids.CLINICAL_DEPARTMENT)} >= {
        "02",
        "03",
        "03.04",
        "03.07",
        "04",
        "05",
        "07",
    }
    for dept in departments:
        assert "prov" in type_codes(
            by_url[dept["partOf"]["reference"]],
            "http://terminology.hl7.org/CodeSystem/organization-type",
        )


def test_some_practitioners_practise_at_two_institutions(bundles) -> None:
    roles = resources(bundles, "PractitionerRole")
    per_practitioner = Counter(r["practitioner"]["reference"] for r in roles)
    assert sum(1 for n in per_practitioner.values() if n >= 2) >= 3
    assert {c["code"] for r in roles for c in r["code"][0]["coding"]} == {
        "doctor",
        "nurse",
        "pharmacist",
    }


def test_every_patient_has_a_valid_resident_id_of_a_demo_county_matching_sex_and_birth_date(
    bundles,
) -> None:
    patients = resources(bundles, "Patient")
    for patient in patients:
        value = next(i["value"] for i in patient["identifier"] if i["system"] == ids.RESIDENT_ID)
        assert validate_resident_id(value, known_region=is_known_division) == []
        region, birth, sex = parse_resident_id(value)
        assert sex == patient["gender"]
        assert birth.isoformat() == patient["birthDate"]
        address = patient["address"][0]
        code = next(
            x["valueCoding"]["code"]
            for x in address["extension"]
            if x["url"] == ADDRESS_DIVISION_EXTENSION
        )
        assert code == region
        assert address["district"] and address["city"] and address["state"] == "浙江省"
        assert address["text"].startswith("浙江省")
        assert patient["name"][0]["text"] == patient["name"][0]["family"] + "".join(
            patient["name"][0]["given"]
        )
        assert (
            patient["telecom"][0]["value"].isdigit() and len(patient["telecom"][0]["value"]) == 11
        )
        assert patient["managingOrganization"]["reference"].startswith("urn:uuid:")
    assert len({p["identifier"][0]["value"] for p in patients}) == len(patients)


def test_same_seed_same_bundles_other_seed_other_bundles() -> None:
    assert json.dumps(demo_bundles(7)) == json.dumps(demo_bundles(7))
    assert json.dumps(demo_bundles(7)) != json.dumps(demo_bundles(8))


def test_summary_counts_each_resource_once(bundles) -> None:
    counts = summary(bundles)
    assert counts == {t: len(resources(bundles, t)) for t in counts}
    assert sum(counts.values()) < sum(len(b["entry"]) for b in bundles)


def test_every_demo_bundle_and_resource_validates_without_errors(bundles) -> None:
    from carenet.fhir.validation import validate_resource

    for bundle in bundles:
        assert [i for i in validate_resource(bundle) if i.severity in ("error", "fatal")] == []
        for entry in bundle["entry"]:
            issues = validate_resource(entry["resource"])
            assert [i.to_fhir() for i in issues if i.severity in ("error", "fatal")] == []


# --- the GB/T 2260 divisions of the region (carenet.fhir.regions) ---


def test_region_holds_one_province_two_cities_three_counties() -> None:
    levels = sorted(d.level for d in DIVISIONS.values())
    assert levels == ["city", "city", "county", "county", "county", "province"]
    assert [d.name for d in children("330000")] == ["杭州市", "温州市"]


def test_every_code_sits_under_its_parent() -> None:
    for d in DIVISIONS.values():
        if d.parent:
            prefix = d.parent[:2] if d.level == "city" else d.parent[:4]
            assert d.code.startswith(prefix)


def test_lineage_runs_from_province_to_county() -> None:
    assert [d.name for d in lineage("330324")] == ["浙江省", "温州市", "永嘉县"]
    assert is_known_division("330122") and not is_known_division("440524")


def test_address_extension_carries_the_code() -> None:
    assert address_division_extension("330127") == {
        "url": ADDRESS_DIVISION_EXTENSION,
        "valueCoding": {"system": ids.REGION_CODE, "code": "330127", "display": "淳安县"},
    }
