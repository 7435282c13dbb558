"""A clinic to book: two hospitals, a doctor with a weekly schedule at the first, a doctor at
the second (referrals), a nurse, an institution admin, real-name verified patients with phones,
and a bearer token for each. Seeded straight into a migrated database of either kind."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date
from datetime import time as dtime
from typing import Any

from bench.booking import mint

from carenet.access.accounts import register_patient, register_staff
from carenet.access.clients import create_client
from carenet.access.practitioners import (
    ROLE_LICENCES,
    register_practitioner_role,
    verify_practitioner_role,
)
from carenet.access.realname import verify_real_name
from carenet.domains.scheduling.model import RELEASE, owner_tag, session_extension
from carenet.domains.scheduling.sessions import SessionTemplate
from carenet.fhir.identifiers import CLINICAL_DEPARTMENT, HOSPITAL_LEVEL, make_resident_id
from carenet.fhir.regions import address_division_extension

SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


@dataclass
class Clinic:
    tokens: dict[str, str] = field(default_factory=dict)  # who -> bearer token
    ids: dict[str, str] = field(default_factory=dict)  # name -> id or reference
    patients: list[str] = field(default_factory=list)  # Patient ids, one per patient token
    phones: dict[str, str] = field(default_factory=dict)  # Patient id -> mobile number
    accounts: dict[str, str] = field(default_factory=dict)  # token name -> account id


def weekly(
    start: dtime = dtime(8, 0),
    end: dtime = dtime(12, 0),
    minutes: int = 30,
    capacity: int = 1,
    reserved: dict[str, int] | None = None,
) -> list[SessionTemplate]:
    """The same session every day of the week."""
    return [
        SessionTemplate(
            weekday=d,
            start=start,
            end=end,
            slot_minutes=minutes,
            capacity=capacity,
            reserved=reserved or {},
            service_type="general",
            fee_fen=1000,
        )
        for d in range(1, 8)
    ]


def seed(
    store: Any,
    ctx: Any,
    *,
    patients: int = 3,
    sessions: list[SessionTemplate] | None = None,
    release_days_before: int = 7,
) -> Clinic:
    w = Clinic()
    rng = random.Random(uuid.uuid4().int)
    with store.unit_of_work() as uow:
        repo, conn = uow.repo, uow.repo.conn
        for name, level, county in (("h1", "2A", "330122"), ("h2", "3A", "330127")):
            w.ids[name] = repo.create(
                "Organization",
                {
                    "resourceType": "Organization",
                    "type": [{"coding": [{"system": HOSPITAL_LEVEL, "code": level}]}],
                    "name": f"测试医院 {name}",
                    "address": [{"extension": [address_division_extension(county)]}],
                },
            )["id"]
        admin = register_staff(
            conn,
            repo,
            ctx,
            role="regional_admin",
            login_name=f"ra{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
        )
        app_client, _ = create_client(
            conn,
            name=f"sched-{uuid.uuid4().hex[:6]}",
            scopes="user/*.cruds patient/*.cruds launch/patient",
            kind="public",
            redirect_uris=["http://localhost/cb"],
        )
        system_client, _ = create_client(
            conn, name=f"sys-{uuid.uuid4().hex[:6]}", scopes="system/*.cruds"
        )
        w.tokens["system"] = mint(conn, system_client, None, "system/*.cruds")
        for who, org, kind in (
            ("doctor", "h1", "doctor"),
            ("doctor2", "h2", "doctor"),
            ("nurse", "h1", "nurse"),
        ):
            licence = uuid.uuid4().hex[:12]
            prac = repo.create(
                "Practitioner",
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": ROLE_LICENCES[kind][0], "value": licence}],
                    "name": [{"text": f"医生 {who}"}],
                },
            )
            role = register_practitioner_role(
                conn,
                repo,
                ctx,
                practitioner_ref=f"Practitioner/{prac['id']}",
                organization_ref=f"Organization/{w.ids[org]}",
                role=kind,  # type: ignore[arg-type]
                licence_number=licence,
                specialty=[{"coding": [{"system": CLINICAL_DEPARTMENT, "code": "03.04"}]}],
            )
            verify_practitioner_role(conn, repo, ctx, f"PractitionerRole/{role['id']}", admin.id)
            w.ids[f"role:{who}"] = role["id"]
            w.ids[f"practitioner:{who}"] = prac["id"]
            acct = register_staff(
                conn,
                repo,
                ctx,
                role=kind,
                login_name=f"{who}{uuid.uuid4().hex[:6]}",
                password="correct horse battery 9",
                practitioner_ref=f"Practitioner/{prac['id']}",
            )
            w.tokens[who] = mint(conn, app_client, acct.id, "user/*.cruds")
        ia = register_staff(
            conn,
            repo,
            ctx,
            role="institution_admin",
            login_name=f"ia{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
            organization_ref=f"Organization/{w.ids['h1']}",
        )
        w.tokens["institution_admin"] = mint(conn, app_client, ia.id, "user/*.cruds")
        w.tokens["regional_admin"] = mint(conn, app_client, admin.id, "user/*.cruds")
        reg = register_staff(
            conn,
            repo,
            ctx,
            role="regulator",
            login_name=f"rg{uuid.uuid4().hex[:6]}",
            password="correct horse battery 9",
        )
        w.tokens["regulator"] = mint(conn, app_client, reg.id, "user/*.cruds")
        room = repo.create(
            "Location",
            {"resourceType": "Location", "name": "内科 3 诊室", **{"meta": owner_tag(w.ids["h1"])}},
        )
        schedule = {
            "resourceType": "Schedule",
            "meta": owner_tag(w.ids["h1"]),
            "extension": [
                *(session_extension(t) for t in (sessions or weekly())),
                {
                    "url": RELEASE,
                    "extension": [
                        {"url": "daysBefore", "valueUnsignedInt": release_days_before},
                        {"url": "time", "valueTime": "08:00:00"},
                        {"url": "poolHoursBefore", "valueUnsignedInt": 24},
                    ],
                },
            ],
            "active": True,
            "actor": [
                {"reference": f"PractitionerRole/{w.ids['role:doctor']}"},
                {"reference": f"Location/{room['id']}"},
            ],
        }
        w.ids["schedule"] = repo.create("Schedule", schedule)["id"]
        used: set[str] = set()
        for i in range(patients):
            while True:
                rid = make_resident_id(
                    "330102",
                    date(1950 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                    rng.randrange(1000),
                )
                if rid not in used:
                    used.add(rid)
                    break
            phone = f"139{rng.randrange(10**8):08d}"
            acct = register_patient(conn, ctx, phone=phone)
            name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
            result = verify_real_name(conn, repo, ctx, acct.id, name, rid)
            pid = result.patient_ref.split("/", 1)[1]
            patient = repo.read("Patient", pid)
            patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
            repo.update("Patient", pid, patient)
            w.patients.append(pid)
            w.phones[pid] = phone
            w.tokens[f"patient{i}"] = mint(conn, app_client, acct.id, "patient/*.cruds")
            w.accounts[f"patient{i}"] = acct.id
        # An account that never passed 实名认证.
        unverified = register_patient(conn, ctx, phone=f"137{rng.randrange(10**8):08d}")
        w.tokens["unverified"] = mint(conn, app_client, unverified.id, "patient/*.cruds")
        uow.commit()
    return w
