"""Access control inside search: a caller's ``visible`` condition hides resources from the
matches and totals, snapshot pages, _include/_revinclude, chains and _has."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import ColumnElement, and_, false, or_
from tests.integration.store.conftest import Store

from carenet.store import search as search_module
from carenet.store.repository import Repository
from carenet.store.search import Visible


def patient(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": str(uuid.uuid4()), **kw}


def obs(**kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"coding": [{"system": "urn:c", "code": "hr"}]},
        **kw,
    }


def visible_only(*allowed: str) -> Visible:
    """A caller who may see exactly the resources ``Type/id`` in ``allowed``."""
    keys = {tuple(key.split("/")) for key in allowed}

    def visible(
        rtype: str | None, type_col: ColumnElement[Any], id_col: ColumnElement[Any]
    ) -> ColumnElement[bool]:
        if rtype is not None:
            return id_col.in_(sorted(i for t, i in keys if t == rtype))
        return or_(false(), *(and_(type_col == t, id_col == i) for t, i in sorted(keys)))

    return visible


def unrestricted(
    rtype: str | None, type_col: ColumnElement[Any], id_col: ColumnElement[Any]
) -> None:
    return None


def keys(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


def query(link: str) -> list[tuple[str, str]]:
    return parse_qsl(link.split("?", 1)[1])


def test_matches_and_totals_count_only_visible_resources(store: Store) -> None:
    a, b, c = (store.add(patient(gender="male")) for _ in range(3))
    o = store.add(obs())
    caller = visible_only(f"Patient/{a}", f"Patient/{c}", f"Observation/{o}")

    assert store.idset("Patient", [("gender", "male")], visible=caller) == {a, c}
    r = store.search("Patient", [("gender", "male"), ("_count", "1")], visible=caller)
    assert [m["id"] for m in r.matches] == [min(a, c)] and r.total == 2
    assert store.search("Patient", [("_summary", "count")], visible=caller).total == 2
    assert store.search("Patient", [("_count", "0")], visible=caller).total == 2
    # System-level searches see the same resources, of every type.
    system = store.search(None, [("_count", "100")], visible=caller)
    assert keys(system.matches) == {f"Patient/{a}", f"Patient/{c}", f"Observation/{o}"}
    assert system.total == 3
    r = store.search(None, [("_type", "Patient"), ("_summary", "count")], visible=caller)
    assert r.total == 2
    assert store.idset("Patient", [("_id", b)], visible=caller) == set()


def test_sorting_is_the_same_with_hidden_resources_left_out(store: Store) -> None:
    ids = [
        store.add(patient(birthDate=f"19{80 + i}-01-01"), last_updated=1_000 + i) for i in range(5)
    ]
    caller = visible_only(*(f"Patient/{i}" for i in ids[1::2]))
    for sort in ("birthdate", "-birthdate", "_lastUpdated", "-_id"):
        everyone = store.ids("Patient", [("_sort", sort)])
        assert store.ids("Patient", [("_sort", sort)], visible=caller) == [
            i for i in everyone if i in ids[1::2]
        ]


def test_snapshot_pages_refilter_with_the_visibility_of_whoever_reads_them(store: Store) -> None:
    ids = sorted(store.add(patient(gender="male")) for _ in range(5))
    owner = visible_only(*(f"Patient/{i}" for i in ids))
    page1 = store.search("Patient", [("gender", "male"), ("_count", "2")], visible=owner)
    assert [m["id"] for m in page1.matches] == ids[:2] and page1.total == 5

    # The same caller, after ids[2] became hidden to them.
    owner_now = visible_only(*(f"Patient/{i}" for i in ids if i != ids[2]))
    page2 = store.search("Patient", query(page1.links["next"]), visible=owner_now)
    assert [m["id"] for m in page2.matches] == [ids[3]]
    assert page2.total == 4

    # Another caller holding the snapshot id sees only what they may see, and counts only that.
    other = visible_only(f"Patient/{ids[4]}")
    for link, expected in ((page1.links["first"], []), (page2.links["next"], [ids[4]])):
        page = store.search("Patient", query(link), visible=other)
        assert [m["id"] for m in page.matches] == expected
        assert page.total == 1
    # Without a visibility condition the snapshot reads as frozen.
    page = store.search("Patient", query(page1.links["next"]))
    assert [m["id"] for m in page.matches] == ids[2:4] and page.total == 5


def test_a_cut_snapshot_counts_the_stored_query_again_for_the_reader(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "SNAPSHOT_MAX", 3)
    ids = sorted(store.add(patient(gender="female")) for _ in range(5))
    page1 = store.search("Patient", [("gender", "female"), ("_count", "2")])
    assert page1.total == 5
    reader = visible_only(*(f"Patient/{i}" for i in ids[1:]))
    page2 = store.search("Patient", query(page1.links["next"]), visible=reader)
    assert [m["id"] for m in page2.matches] == [ids[2]]
    assert page2.total == 4 and page2.issues == []


def test_includes_leave_out_hidden_resources_and_do_not_iterate_through_them(
    store: Store,
) -> None:
    org = store.add({"resourceType": "Organization", "name": "County Hospital"})
    shown = store.add(patient(managingOrganization={"reference": f"Organization/{org}"}))
    hidden = store.add(patient(managingOrganization={"reference": f"Organization/{org}"}))
    o1 = store.add(obs(subject={"reference": f"Patient/{shown}"}))
    o2 = store.add(obs(subject={"reference": f"Patient/{hidden}"}))
    o3 = store.add(obs(subject={"reference": f"Patient/{shown}"}))
    caller = visible_only(f"Patient/{shown}", f"Observation/{o1}", f"Observation/{o2}")

    r = store.search("Observation", [("_include", "Observation:subject")], visible=caller)
    assert keys(r.matches) == {f"Observation/{o1}", f"Observation/{o2}"}
    assert keys(r.includes) == {f"Patient/{shown}"}
    # :iterate does not follow references out of a hidden resource, even to a visible one.
    r = store.search(
        "Observation",
        [("_id", o2), ("_include", "*"), ("_include:iterate", "Patient:organization")],
        visible=visible_only(f"Observation/{o2}", f"Organization/{org}"),
    )
    assert (keys(r.matches), keys(r.includes)) == ({f"Observation/{o2}"}, set())
    r = store.search(
        "Observation",
        [("_id", o1), ("_include", "*"), ("_include:iterate", "Patient:organization")],
        visible=visible_only(f"Observation/{o1}", f"Patient/{shown}", f"Organization/{org}"),
    )
    assert keys(r.includes) == {f"Patient/{shown}", f"Organization/{org}"}
    r = store.search(
        "Patient", [("_id", shown), ("_revinclude", "Observation:subject")], visible=caller
    )
    assert keys(r.includes) == {f"Observation/{o1}"}
    r = store.search("Patient", [("_id", shown), ("_revinclude", "*")], visible=caller)
    assert keys(r.includes) == {f"Observation/{o1}"}
    assert o3 not in store.idset("Observation", [], visible=caller)


def test_chains_do_not_match_through_hidden_targets(store: Store) -> None:
    org = store.add({"resourceType": "Organization", "name": "County Hospital"})
    shown = store.add(
        patient(
            name=[{"family": "Zhou"}], managingOrganization={"reference": f"Organization/{org}"}
        )
    )
    hidden = store.add(patient(name=[{"family": "Zhou"}]))
    o1 = store.add(obs(subject={"reference": f"Patient/{shown}"}))
    o2 = store.add(obs(subject={"reference": f"Patient/{hidden}"}))
    observations = (f"Observation/{o1}", f"Observation/{o2}")
    caller = visible_only(*observations, f"Patient/{shown}", f"Organization/{org}")

    for name in ("subject.name", "subject:Patient.name", "patient.family"):
        assert store.idset("Observation", [(name, "zhou")]) == {o1, o2}
        assert store.idset("Observation", [(name, "zhou")], visible=caller) == {o1}
    two_levels = [("subject:Patient.organization.name", "County")]
    assert store.idset("Observation", two_levels, visible=caller) == {o1}
    without_org = visible_only(*observations, f"Patient/{shown}")
    assert store.idset("Observation", two_levels, visible=without_org) == set()
    r = store.search(
        "Observation", [("subject.name", "zhou"), ("_summary", "count")], visible=caller
    )
    assert r.total == 1


def test_has_is_not_satisfied_by_hidden_sources(store: Store) -> None:
    p1 = store.add(patient())
    p2 = store.add(patient())
    o1 = store.add(obs(subject={"reference": f"Patient/{p1}"}))
    o2 = store.add(obs(subject={"reference": f"Patient/{p2}"}))
    caller = visible_only(f"Patient/{p1}", f"Patient/{p2}", f"Observation/{o1}")

    has = [("_has:Observation:subject:code", "urn:c|hr")]
    assert store.idset("Patient", has) == {p1, p2}
    assert store.idset("Patient", has, visible=caller) == {p1}
    assert store.search("Patient", [*has, ("_count", "0")], visible=caller).total == 1
    # Nested in a chain: o3 is visible, but its subject has only the hidden o2 with code hr.
    o3 = store.add(obs(subject={"reference": f"Patient/{p2}"}, code={"text": "other"}))
    chained = [("subject:Patient._has:Observation:subject:code", "urn:c|hr")]
    assert store.idset("Observation", chained) == {o1, o2, o3}
    sees_o3 = visible_only(
        f"Patient/{p1}", f"Patient/{p2}", f"Observation/{o1}", f"Observation/{o3}"
    )
    assert store.idset("Observation", chained, visible=sees_o3) == {o1}


def test_no_visibility_condition_searches_everything_as_before(store: Store) -> None:
    org = store.add({"resourceType": "Organization", "name": "County Hospital"})
    p = store.add(
        patient(name=[{"family": "Li"}], managingOrganization={"reference": f"Organization/{org}"})
    )
    o = store.add(obs(subject={"reference": f"Patient/{p}"}))
    searches: list[tuple[str | None, list[tuple[str, str]]]] = [
        ("Observation", [("subject.name", "li"), ("_include", "Observation:subject")]),
        ("Patient", [("_has:Observation:subject:code", "hr"), ("_revinclude", "*")]),
        ("Patient", [("_include", "Patient:organization"), ("_summary", "count")]),
        (None, [("_count", "100")]),
    ]
    for rtype, params in searches:
        plain = store.search(rtype, params)
        for visible in (None, unrestricted):
            r = store.search(rtype, params, visible=visible)
            assert (keys(r.matches), keys(r.includes), r.total) == (
                keys(plain.matches),
                keys(plain.includes),
                plain.total,
            )
    assert keys(store.search("Observation", searches[0][1]).matches) == {f"Observation/{o}"}
    assert keys(store.search("Observation", searches[0][1]).includes) == {f"Patient/{p}"}


def test_repository_search_and_find_pass_the_visibility_condition_on(store: Store) -> None:
    a, b = (store.add(patient(gender="other")) for _ in range(2))
    caller = visible_only(f"Patient/{b}")
    with store.engine.begin() as conn:
        repo = Repository(conn, source="test", validate=False)
        assert [m["id"] for m in repo.find("Patient", "gender=other", visible=caller)] == [b]
        assert {m["id"] for m in repo.find("Patient", "gender=other")} == {a, b}
        r = repo.search("Patient", [("gender", "other")], visible=caller)
        assert ([m["id"] for m in r.matches], r.total) == ([b], 1)
