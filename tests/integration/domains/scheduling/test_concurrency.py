"""Booking under real concurrency, through a running server, on both stores: 200 clients racing
for 20 single-place slots book exactly 20; cancellations racing bookings never lose or
overbook a place."""

from __future__ import annotations

import concurrent.futures
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.integration.domains.scheduling.world import Clinic, seed

from carenet.bootstrap import build_auth_context, build_store
from carenet.config import Settings
from carenet.domains.scheduling.model import QUOTA

TZ = ZoneInfo("Asia/Shanghai")


def _headers(clinic: Clinic, who: str) -> dict[str, str]:
    return {
        "Content-Type": "application/fhir+json",
        "Authorization": f"Bearer {clinic.tokens[who]}",
    }


def _params(**refs: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueReference": {"reference": v}} for k, v in refs.items()],
    }


def _world(live_server: str, db_url: str, patients: int) -> tuple[Clinic, list[dict[str, Any]]]:
    settings = Settings(database_url=db_url, env="test")
    store = build_store(settings)
    try:
        clinic = seed(store, build_auth_context(settings), patients=patients)
    finally:
        store.engine.dispose()
    first = (datetime.now(TZ) + timedelta(days=1)).date()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDate": first.isoformat()},
            {"name": "days", "valueInteger": 3},
        ],
    }
    r = httpx.post(
        f"{live_server}/Schedule/{clinic.ids['schedule']}/$generate",
        json=body,
        headers=_headers(clinic, "institution_admin"),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    slots = [p["resource"] for p in r.json()["parameter"] if p["name"] == "slot"]
    return clinic, slots


def _booked_count(slot: dict[str, Any]) -> int:
    return sum(
        next(x["valueUnsignedInt"] for x in q["extension"] if x["url"] == "booked")
        for q in slot.get("extension", [])
        if q["url"] == QUOTA
    )


def _active(live_server: str, clinic: Clinic, slot_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{live_server}/Appointment",
        params={"slot": f"Slot/{slot_id}", "status": "booked,arrived", "_count": "500"},
        headers=_headers(clinic, "system"),
        timeout=60,
    )
    return [e["resource"] for e in r.json().get("entry", [])]


@pytest.mark.slow
def test_two_hundred_clients_racing_for_twenty_slots_book_exactly_twenty(
    live_server: str, db_url: str
) -> None:
    clinic, slots = _world(live_server, db_url, patients=200)
    slots = slots[:20]

    def attempt(i: int) -> tuple[int, list[str]]:
        body = _params(slot=f"Slot/{slots[i % 20]['id']}", patient=f"Patient/{clinic.patients[i]}")
        with httpx.Client(timeout=120) as c:
            r = c.post(
                f"{live_server}/Appointment/$book",
                json=body,
                headers=_headers(clinic, f"patient{i}"),
            )
        codes = [
            c.get("code")
            for issue in (r.json().get("issue") or [])
            for c in (issue.get("details") or {}).get("coding", [])
        ]
        return r.status_code, codes

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(attempt, range(200)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 20, statuses
    assert [codes for s, codes in results if s != 200] == [["APPT-SLOT-FULL"]] * 180
    patients: list[str] = []
    for slot in slots:
        active = _active(live_server, clinic, slot["id"])
        assert len(active) == 1, (slot["id"], active)
        current = httpx.get(
            f"{live_server}/Slot/{slot['id']}", headers=_headers(clinic, "system")
        ).json()
        assert current["status"] == "busy"
        assert _booked_count(current) == 1
        patients += [
            p["actor"]["reference"]
            for p in active[0]["participant"]
            if p["actor"]["reference"].startswith("Patient/")
        ]
    assert len(patients) == len(set(patients)) == 20


@pytest.mark.slow
def test_cancellations_racing_bookings_never_lose_or_overbook_a_place(
    live_server: str, db_url: str
) -> None:
    clinic, slots = _world(live_server, db_url, patients=31)
    slot = slots[0]
    holder = 0  # who holds the slot now
    r = httpx.post(
        f"{live_server}/Appointment/$book",
        json=_params(slot=f"Slot/{slot['id']}", patient=f"Patient/{clinic.patients[0]}"),
        headers=_headers(clinic, "patient0"),
    )
    assert r.status_code == 200, r.text
    appointment = r.json()["parameter"][0]["resource"]["id"]
    racers = iter(range(1, 31))
    for _round in range(6):
        bookers = [next(racers) for _ in range(5)]

        def cancel() -> tuple[str, int]:
            with httpx.Client(timeout=120) as c:
                r = c.post(
                    f"{live_server}/Appointment/{appointment}/$cancel",
                    json={"resourceType": "Parameters"},
                    headers=_headers(clinic, f"patient{holder}"),
                )
            return "cancel", r.status_code

        def book(i: int) -> tuple[str, int, str | None]:
            with httpx.Client(timeout=120) as c:
                r = c.post(
                    f"{live_server}/Appointment/$book",
                    json=_params(
                        slot=f"Slot/{slot['id']}", patient=f"Patient/{clinic.patients[i]}"
                    ),
                    headers=_headers(clinic, f"patient{i}"),
                )
            new = r.json()["parameter"][0]["resource"]["id"] if r.status_code == 200 else None
            return str(i), r.status_code, new

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            cancelled = pool.submit(cancel)
            booked = [pool.submit(book, i) for i in bookers]
            assert cancelled.result()[1] == 200
            outcomes = [b.result() for b in booked]
        winners = [o for o in outcomes if o[1] == 200]
        assert all(o[1] in (200, 409) for o in outcomes), outcomes
        active = _active(live_server, clinic, slot["id"])
        current = httpx.get(
            f"{live_server}/Slot/{slot['id']}", headers=_headers(clinic, "system")
        ).json()
        # The place is held by at most one, and the slot's count agrees with the bookings.
        assert len(active) == len(winners) <= 1, (active, outcomes)
        assert _booked_count(current) == len(active)
        assert current["status"] == ("busy" if active else "free")
        if not winners:  # every booker came before the cancel: take it now for the next round
            r = httpx.post(
                f"{live_server}/Appointment/$book",
                json=_params(
                    slot=f"Slot/{slot['id']}", patient=f"Patient/{clinic.patients[bookers[0]]}"
                ),
                headers=_headers(clinic, f"patient{bookers[0]}"),
            )
            assert r.status_code == 200, r.text
            winners = [(str(bookers[0]), 200, r.json()["parameter"][0]["resource"]["id"])]
        holder, appointment = int(winners[0][0]), str(winners[0][2])
