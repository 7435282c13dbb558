"""Sorting, paging, _include/_revinclude, chaining, _has and parameter handling of search()."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.integration.store.conftest import Store

from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store import schema


def patient(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": str(uuid.uuid4()), **kw}


def obs(**kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"text": "x"},
        **kw,
    }


def coded(system: str | None, code: str) -> dict[str, Any]:
    return {"system": system, "code": code} if system else {"code": code}


def test_sort_on_several_keys_ascending_and_descending(store: Store) -> None:
    a = store.add(patient(name=[{"family": "Li"}], birthDate="1990-01-01"))
    b = store.add(patient(name=[{"family": "Li"}], birthDate="1985-06-01"))
    c = store.add(patient(name=[{"family": "Wang"}], birthDate="2000-01-01"))
    d = store.add(patient(name=[{"family": "Chen"}]))
    assert store.ids("Patient", [("_sort", "family,birthdate")]) == [d, b, a, c]
    assert store.ids("Patient", [("_sort", "family,-birthdate")]) == [d, a, b, c]
    assert store.ids("Patient", [("_sort", "-family,birthdate")]) == [c, b, a, d]
    # Resources without a value sort last either way.
    assert store.ids("Patient", [("_sort", "birthdate")]) == [b, a, c, d]
    assert store.ids("Patient", [("_sort", "-birthdate")]) == [c, a, b, d]
    assert store.ids("Patient", [("_sort", "-_id")]) == sorted([a, b, c, d], reverse=True)


def test_sort_ties_break_by_id_and_last_updated_sorts(store: Store) -> None:
    ids = [store.add(patient(gender="male"), last_updated=1_000 + i) for i in range(4)]
    assert store.ids("Patient", [("_sort", "gender")]) == sorted(ids)
    assert store.ids("Patient", [("_sort", "-_lastUpdated")]) == list(reversed(ids))
    assert store.ids("Patient", [("_sort", "_lastUpdated")]) == ids


def test_count_zero_gives_only_total_and_total_none(store: Store) -> None:
    for _ in range(3):
        store.add(patient(gender="female"))
    r = store.search("Patient", [("gender", "female"), ("_count", "0")])
    assert (r.matches, r.total) == ([], 3)
    r = store.search("Patient", [("_summary", "count")])
    assert (r.matches, r.total) == ([], 3)
    r = store.search("Patient", [("_total", "none")])
    assert len(r.matches) == 3 and r.total is None
    r = store.search("Patient", [("_total", "estimate"), ("_count", "2")])
    assert len(r.matches) == 2 and r.total == 3
    for name, bad in (("_count", "-1"), ("_count", "x"), ("_total", "maybe")):
        with pytest.raises(OperationOutcomeError) as exc:
            store.search("Patient", [(name, bad)])
        assert exc.value.status == 400 and exc.value.issues[0].expression == (name,)


def _query(link: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(link.split("?", 1)[1])


def test_paging_is_stable_while_data_changes(store: Store) -> None:
    ids = sorted(store.add(patient(gender="male")) for _ in range(5))
    page1 = store.search("Patient", [("gender", "male"), ("_count", "2")])
    assert [m["id"] for m in page1.matches] == ids[:2]
    assert page1.total == 5
    assert page1.links["self"] == "Patient?gender=male&_count=2"
    assert set(page1.links) == {"self", "first", "next", "last"}
    # A new resource that sorts first, and a deleted one, between page 1 and page 2.
    store.add(patient(id="0" * 8, gender="male"))
    with store.engine.begin() as conn:
        conn.execute(
            schema.resources.update()
            .where(schema.resources.c.res_id == ids[3])
            .values(deleted=True)
        )
    page2 = store.search("Patient", _query(page1.links["next"]))
    assert [m["id"] for m in page2.matches] == [ids[2]]
    assert page2.total == 5
    assert set(page2.links) == {"self", "first", "previous", "next", "last"}
    page3 = store.search("Patient", _query(page2.links["next"]))
    assert [m["id"] for m in page3.matches] == [ids[4]]
    assert "next" not in page3.links
    assert page3.links["last"] == page3.links["self"]
    first = store.search("Patient", _query(page3.links["first"]))
    assert [m["id"] for m in first.matches] == ids[:2]
    # A fresh search sees the new resource.
    assert store.ids("Patient", [("gender", "male"), ("_count", "2")]) == ["0" * 8, ids[0]]


def test_unknown_or_expired_snapshot_is_gone(store: Store) -> None:
    for _ in range(3):
        store.add(patient())
    page1 = store.search("Patient", [("_count", "1")], now_ms=1_000_000_000_000)
    with pytest.raises(OperationOutcomeError) as exc:
        store.search("Patient", _query(page1.links["next"]), now_ms=1_000_000_000_000 + 3_600_001)
    assert exc.value.status == 410
    with pytest.raises(OperationOutcomeError) as exc:
        store.search("Patient", [("_getpages", str(uuid.uuid4()))])
    assert exc.value.status == 410


def test_include_revinclude_and_iterate(store: Store) -> None:
    org = store.add({"resourceType": "Organization", "name": "County Hospital"})
    doc = store.add({"resourceType": "Practitioner", "name": [{"family": "Zhou"}]})
    role = store.add(
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{doc}"},
            "organization": {"reference": f"Organization/{org}"},
        }
    )
    pat = store.add(
        patient(
            generalPractitioner=[{"reference": f"Practitioner/{doc}"}],
            managingOrganization={"reference": f"Organization/{org}"},
        )
    )
    o1 = store.add(
        obs(
            subject={"reference": f"Patient/{pat}"},
            performer=[{"reference": f"Practitioner/{doc}"}],
        )
    )
    o2 = store.add(obs(subject={"reference": f"Patient/{pat}"}))

    def inc(params: list[tuple[str, str]]) -> tuple[list[str], set[str]]:
        r = store.search("Observation", params)
        return [m["id"] for m in r.matches], {f"{i['resourceType']}/{i['id']}" for i in r.includes}

    assert inc([("_id", o1), ("_include", "Observation:subject")]) == ([o1], {f"Patient/{pat}"})
    assert inc([("_id", o1), ("_include", "Observation:subject:Group")]) == ([o1], set())
    assert inc([("_id", o1), ("_include", "Observation:*")]) == (
        [o1],
        {f"Patient/{pat}", f"Practitioner/{doc}"},
    )
    assert inc([("code:text", "x"), ("_include", "Observation:subject"), ("_sort", "_id")])[1] == {
        f"Patient/{pat}"
    }
    # :iterate follows references from included resources too.
    assert inc(
        [
            ("_id", o1),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:organization"),
        ]
    ) == (
        [o1],
        {f"Patient/{pat}", f"Organization/{org}"},
    )
    assert inc(
        [("_id", o1), ("_include", "Observation:subject"), ("_include", "Patient:organization")]
    ) == ([o1], {f"Patient/{pat}"})
    r = store.search("Patient", [("_id", pat), ("_revinclude", "Observation:subject")])
    assert {i["id"] for i in r.includes} == {o1, o2}
    r = store.search(
        "Practitioner",
        [
            ("_id", doc),
            ("_revinclude", "PractitionerRole:practitioner"),
            ("_include:iterate", "PractitionerRole:organization"),
        ],
    )
    assert [i["id"] for i in r.includes] == [role, org]
    with pytest.raises(OperationOutcomeError):
        store.search("Observation", [("_include", "Nonsense")])


def test_chaining_and_has(store: Store) -> None:
    p1 = store.add(
        patient(
            name=[{"family": "王", "given": ["小明"]}],
            identifier=[{"system": "urn:id", "value": "A1"}],
        )
    )
    p2 = store.add(patient(name=[{"family": "李"}]))
    grp = store.add(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "identifier": [{"system": "urn:id", "value": "A1"}],
        }
    )
    o1 = store.add(
        obs(
            subject={"reference": f"Patient/{p1}"},
            code={"coding": [coded("http://loinc.org", "1234-5")]},
        )
    )
    o2 = store.add(
        obs(
            subject={"reference": f"Patient/{p2}"},
            code={"coding": [coded("http://loinc.org", "999")]},
        )
    )
    o3 = store.add(obs(subject={"reference": f"Group/{grp}"}))
    q = lambda rt, n, v: store.idset(rt, [(n, v)])  # noqa: E731
    assert q("Observation", "subject:Patient.name", "王") == {o1}
    assert q("Observation", "subject:Patient.identifier", "urn:id|A1") == {o1}
    assert q("Observation", "patient.name", "李") == {o2}
    # subject may be a Patient or a Group (or ...): every target type is tried.
    assert q("Observation", "subject.identifier", "urn:id|A1") == {o1, o3}
    assert q("Observation", "subject.name", "王") == {o1}
    assert q("Observation", "subject._id", p2) == {o2}
    assert q("Observation", "subject:Patient.name:exact", "李") == {o2}
    assert q("Patient", "_has:Observation:patient:code", "1234-5") == {p1}
    assert q("Patient", "_has:Observation:subject:code", "http://loinc.org|999,1234-5") == {p1, p2}
    assert q("Patient", "_has:Observation:patient:code", "nothing") == set()
    doc = str(uuid.uuid4())
    store.add(
        {
            "resourceType": "Provenance",
            "recorded": "2020-01-01T00:00:00Z",
            "target": [{"reference": f"Observation/{o2}"}],
            "agent": [{"who": {"reference": f"Practitioner/{doc}"}}],
        }
    )
    assert q(
        "Patient", "_has:Observation:patient:_has:Provenance:target:agent", f"Practitioner/{doc}"
    ) == {p2}
    with pytest.raises(OperationOutcomeError):
        store.search("Patient", [("_has:Observation:patient", "x")])
    with pytest.raises(OperationOutcomeError):
        store.search("Observation", [("status.name", "x")])


def test_unknown_parameters_strict_and_lenient(store: Store) -> None:
    a = store.add(patient(gender="male"))
    r = store.search(
        "Patient",
        [
            ("gender", "male"),
            ("nonsense", "1"),
            ("gender:fuzzy", "m"),
            ("_elements", "id"),
            ("_format", "json"),
        ],
    )
    assert [m["id"] for m in r.matches] == [a]
    assert [(i.severity, i.expression) for i in r.issues] == [
        ("warning", ("nonsense",)),
        ("warning", ("gender:fuzzy",)),
    ]
    for bad in ("nonsense", "gender:fuzzy", "code:in", "subject.nonsense"):
        with pytest.raises(OperationOutcomeError) as exc:
            store.search(
                "Patient" if "subject" not in bad else "Observation", [(bad, "1")], strict=True
            )
        assert exc.value.status == 400
        assert exc.value.issues[0].expression == (bad,)
    # Malformed values are refused even in lenient mode.
    with pytest.raises(OperationOutcomeError) as exc:
        store.search("Patient", [("birthdate", "later")])
    assert exc.value.issues[0].expression == ("birthdate",)


def test_system_level_search(store: Store) -> None:
    a = store.add(patient(meta={"tag": [{"code": "demo"}]}), last_updated=5_000)
    b = store.add(obs(meta={"tag": [{"code": "demo"}]}), last_updated=6_000)
    store.add(obs(), last_updated=7_000)
    assert store.idset(None, [("_tag", "demo")]) == {a, b}
    assert store.idset(None, [("_tag", "demo"), ("_type", "Observation")]) == {b}
    assert store.ids(
        None, [("_lastUpdated", "lt1970-01-01T00:00:06.500Z"), ("_sort", "-_lastUpdated")]
    ) == [b, a]
    r = store.search(None, [("name", "x")])
    assert r.issues and r.issues[0].expression == ("name",)
    with pytest.raises(OperationOutcomeError):
        store.search(None, [("_type", "Nope")])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("name", "a\x00b"),
        ("name", "\ud800"),
        ("probability", "1e-999"),
        ("probability", "1e999"),
        ("_getpagesoffset", "x"),
        ("subject:Patient.birthdate", "soon"),
        ("_has:Observation:patient:date", "soon"),
        ("_include", "Observation"),
    ],
)
def test_malformed_input_is_400_never_a_crash(store: Store, name: str, value: str) -> None:
    rtype = (
        "RiskAssessment"
        if name == "probability"
        else "Patient"
        if name.startswith("_has") or name == "name"
        else "Observation"
    )
    params = [(name, value)]
    if name == "_getpagesoffset":
        params.insert(0, ("_getpages", str(uuid.uuid4())))
    with pytest.raises(OperationOutcomeError) as exc:
        store.search(rtype, params)
    assert exc.value.status == 400
    assert exc.value.issues[0].expression == (name,)


def test_warnings_inside_chains_name_the_whole_parameter(store: Store) -> None:
    r = store.search("Patient", [("_has:Observation:patient:nonsense", "1")])
    assert [i.expression for i in r.issues] == [("_has:Observation:patient:nonsense",)]
