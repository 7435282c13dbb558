"""Fixtures for the scheduling tests: the clinic of world.py behind the app, with a clock the
test moves (release times, cut-offs and queues depend on it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.integration.domains.scheduling.world import Clinic, seed

from carenet.adapters.notify import notify_outbox
from carenet.api.app import create_app
from carenet.bootstrap import build_auth_context, build_store
from carenet.config import Settings
from carenet.store.migrate import upgrade
from carenet.store.schema import metadata

BASE = "http://testserver"
TZ = ZoneInfo("Asia/Shanghai")
# A Monday; the clinic's sessions run 08:00-12:00 every day in 30-minute slots.
MONDAY = datetime(2027, 3, 1, 7, 0, tzinfo=TZ)


@dataclass
class Env:
    client: TestClient
    store: Any
    ctx: Any
    clinic: Clinic
    now: datetime

    def clock(self) -> datetime:
        return self.now

    def headers(self, who: str | None) -> dict[str, str]:
        h = {"Content-Type": "application/fhir+json"}
        if who is not None:
            h["Authorization"] = f"Bearer {self.clinic.tokens[who]}"
        return h

    def op(self, who: str | None, path: str, **params: Any) -> Any:
        """POST an operation with Parameters built from keyword arguments."""
        body: dict[str, Any] = {"resourceType": "Parameters"}
        if params:
            body["parameter"] = [_param(k, v) for k, v in params.items()]
        return self.client.post(f"/fhir/{path}", json=body, headers=self.headers(who))

    def generate(self, start: str, days: int = 1) -> list[dict[str, Any]]:
        r = self.op(
            "institution_admin",
            f"Schedule/{self.clinic.ids['schedule']}/$generate",
            start=("Date", start),
            days=("Integer", days),
        )
        assert r.status_code == 200, r.text
        return [p["resource"] for p in r.json()["parameter"] if p["name"] == "slot"]

    def book(self, who: str, slot: dict[str, Any], patient: str, **extra: Any) -> Any:
        return self.op(
            who,
            "Appointment/$book",
            slot=("Reference", {"reference": f"Slot/{slot['id']}"}),
            patient=("Reference", {"reference": f"Patient/{patient}"}),
            **extra,
        )

    def read(self, ref: str) -> dict[str, Any]:
        r = self.client.get(f"/fhir/{ref}", headers=self.headers("system"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def counts(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            return {
                name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for name, t in metadata.tables.items()
                if not name.startswith(("search_snapshot", "audit_"))
            }

    def messages(self, patient: str, template: str | None = None) -> list[str]:
        """Templates of the SMS queued for a patient's phone, oldest first."""
        blind = self.ctx.protector.blind_index(self.clinic.phones[patient], field="sms")
        q = select(notify_outbox.c.template).where(notify_outbox.c.to_index == blind)
        if template is not None:
            q = q.where(notify_outbox.c.template == template)
        with self.store.engine.connect() as conn:
            return list(conn.execute(q.order_by(notify_outbox.c.created)).scalars())


def _param(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, tuple):
        return {"name": name, f"value{value[0]}": value[1]}
    return {"name": name, "valueString" if name != "channel" else "valueCode": value}


def outcome_codes(r: Any) -> list[str]:
    return [
        c.get("code")
        for i in r.json().get("issue", [])
        for c in (i.get("details") or {}).get("coding", [])
    ]


@pytest.fixture
def env(db_url: str) -> Iterator[Env]:
    settings = Settings(database_url=db_url, base_url=BASE, node_id="sched-test", env="test")
    upgrade(db_url)
    store = build_store(settings)
    ctx = build_auth_context(settings)
    clinic = seed(store, ctx)
    holder: dict[str, Env] = {}
    app = create_app(settings, store, clock=lambda: holder["env"].now)
    e = Env(
        TestClient(app, base_url=BASE, raise_server_exceptions=False), store, ctx, clinic, MONDAY
    )
    holder["env"] = e
    with e.client:
        yield e
    store.engine.dispose()


def at(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm, second=0, microsecond=0)


def plus(days: int) -> timedelta:
    return timedelta(days=days)
