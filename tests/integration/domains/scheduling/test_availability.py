"""Finding places to book (Slot/$availability) by institution, level, department, practitioner,
visit type, region and day, open to anyone, on both stores."""

from __future__ import annotations

from typing import Any

import pytest
from tests.integration.domains.scheduling.conftest import Env


def _find(env: Env, who: str | None = None, **params: str) -> list[dict[str, Any]]:
    r = env.client.get("/fhir/Slot/$availability", params=params, headers=env.headers(who))
    assert r.status_code == 200, r.text
    return [
        {p["name"]: p for p in a["part"] if p["name"] != "slot"}
        | {"slots": [p["resource"]["id"] for p in a["part"] if p["name"] == "slot"]}
        for a in r.json().get("parameter", [])
    ]


def test_anyone_finds_the_free_released_slots_of_a_day(env: Env) -> None:
    slots = env.generate("2027-03-02")
    found = _find(env, None, date="2027-03-02")
    assert len(found) == 1
    assert found[0]["schedule"]["valueReference"]["reference"] == (
        f"Schedule/{env.clinic.ids['schedule']}"
    )
    assert found[0]["organization"]["valueReference"]["display"] == "测试医院 h1"
    assert found[0]["free"]["valueInteger"] == 8
    assert found[0]["slots"] == [s["id"] for s in slots]
    assert env.book("patient0", slots[2], env.clinic.patients[0]).status_code == 200
    found = _find(env, "patient1", date="2027-03-02")
    assert found[0]["free"]["valueInteger"] == 7
    assert slots[2]["id"] not in found[0]["slots"]
    assert _find(env, None, date="2027-03-03") == []  # no slots generated for that day


@pytest.mark.parametrize(
    ("criterion", "match", "miss"),
    [
        ("level", "2", "3"),
        ("level", "2A", "2B"),
        ("region", "330000", "330300"),
        ("region", "330122", "330127"),
        ("department", "03.04", "04"),
        ("service-type", "general", "expert"),
    ],
)
def test_each_criterion_narrows_the_search(env: Env, criterion: str, match: str, miss: str) -> None:
    env.generate("2027-03-02")
    assert len(_find(env, None, date="2027-03-02", **{criterion: match})) == 1
    assert _find(env, None, date="2027-03-02", **{criterion: miss}) == []


def test_by_institution_and_by_practitioner(env: Env) -> None:
    env.generate("2027-03-02")
    ids = env.clinic.ids
    assert len(_find(env, None, date="2027-03-02", organization=f"Organization/{ids['h1']}")) == 1
    assert _find(env, None, date="2027-03-02", organization=f"Organization/{ids['h2']}") == []
    doctor = f"Practitioner/{ids['practitioner:doctor']}"
    other = f"Practitioner/{ids['practitioner:doctor2']}"
    assert len(_find(env, None, date="2027-03-02", practitioner=doctor)) == 1
    assert _find(env, None, date="2027-03-02", practitioner=other) == []


def test_slots_not_yet_released_or_past_are_not_offered(env: Env) -> None:
    env.generate("2027-03-09")  # released 2027-03-02 08:00; now is 2027-03-01 07:00
    assert _find(env, None, date="2027-03-09") == []
    env.generate("2027-03-01")
    env.now = env.now.replace(hour=10, minute=5)  # 08:00-10:00 are past; 10:30 on remain
    found = _find(env, None, date="2027-03-01")
    assert found[0]["free"]["valueInteger"] == 3


def test_bad_criteria_are_coded_errors(env: Env) -> None:
    r = env.client.get("/fhir/Slot/$availability", params={"date": "2027-13-01"})
    assert r.status_code == 400
    r = env.client.get("/fhir/Slot/$availability", params={"colour": "red"})
    assert r.status_code == 400
    r = env.client.get("/fhir/Slot/$availability", params={"organization": "Patient/1"})
    assert r.status_code == 400
