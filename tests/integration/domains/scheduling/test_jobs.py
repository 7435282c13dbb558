"""The daily jobs: rolling every schedule's slot window forward, on both stores."""

from __future__ import annotations

from tests.integration.domains.scheduling.conftest import Env

from carenet.domains.scheduling.jobs import roll_schedules
from carenet.domains.scheduling.model import SESSION


def test_rolling_generates_the_window_once_and_reports_a_broken_schedule(env: Env) -> None:
    settings = env.client.app.state.settings
    done, created, refused = roll_schedules(env.store, settings, now=env.now)
    assert (done, created, refused) == (1, 14 * 8, [])
    assert roll_schedules(env.store, settings, now=env.now) == (1, 0, [])
    # The next day only the new last day is added.
    nxt = env.now.replace(day=2)
    assert roll_schedules(env.store, settings, now=nxt) == (1, 8, [])
    # A schedule whose template is broken is reported; the others still roll.
    broken = env.read(f"Schedule/{env.clinic.ids['schedule']}")
    broken.pop("id")
    broken.pop("meta")
    session = next(e for e in broken["extension"] if e["url"] == SESSION)
    session["extension"] = [p for p in session["extension"] if p["url"] != "slotMinutes"]
    broken["extension"] = [session]
    r = env.client.post("/fhir/Schedule", json=broken, headers=env.headers("institution_admin"))
    assert r.status_code == 201, r.text
    before = env.counts()
    assert roll_schedules(env.store, settings, now=nxt) == (1, 0, [r.json()["id"]])
    assert env.counts() == before
