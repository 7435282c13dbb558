"""The `carenet` command on a real database: migrate, demo (twice), load Bundles and NDJSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from sqlalchemy import create_engine, func, select

from carenet.store.schema import resources


def run(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARENET_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "carenet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def counts(db_url: str) -> dict[str, int]:
    from carenet.store.engine import build_engine

    engine = (
        build_engine(db_url)
        if db_url.startswith("sqlite")
        else create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    )
    try:
        with engine.connect() as c:
            rows = c.execute(
                select(resources.c.res_type, func.count())
                .where(resources.c.deleted.is_(False))
                .group_by(resources.c.res_type)
            ).all()
        return {t: n for t, n in rows}
    finally:
        engine.dispose()


def test_demo_loads_the_region_once_and_a_second_load_adds_nothing(db_url):
    first = run(db_url, "demo")
    assert first.returncode == 0, first.stderr
    after_first = counts(db_url)
    assert after_first["Patient"] >= 200
    assert after_first["Practitioner"] >= 40
    assert after_first["Organization"] >= 3 + 2 + 3 + 9  # region bodies and hospitals of each level
    second = run(db_url, "demo")
    assert second.returncode == 0, second.stderr
    assert counts(db_url) == after_first


def test_load_takes_bundles_and_ndjson_from_files_and_folders(db_url, tmp_path):
    assert run(db_url, "migrate").returncode == 0
    folder = tmp_path / "data"
    folder.mkdir()
    tag = uuid.uuid4().hex[:8]
    with open(folder / "patients.ndjson", "w", encoding="utf-8") as f:
        for i in range(5):
            f.write(
                json.dumps(
                    {
                        "resourceType": "Patient",
                        "identifier": [{"system": "urn:test", "value": f"{tag}-{i}"}],
                    }
                )
                + "\n"
            )
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {"resourceType": "Organization", "name": "测试医院"},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "resource": {
                    "resourceType": "Location",
                    "name": "门诊楼",
                    "managingOrganization": {
                        "reference": "urn:uuid:11111111-1111-1111-1111-111111111111"
                    },
                },
                "request": {"method": "POST", "url": "Location"},
            },
        ],
    }
    (folder / "bundle.json").write_text(json.dumps(bundle), encoding="utf-8")
    result = run(db_url, "load", str(folder))
    assert result.returncode == 0, result.stderr
    c = counts(db_url)
    assert c == {"Patient": 5, "Organization": 1, "Location": 1}


def test_load_reports_a_refused_bundle_and_exits_non_zero(db_url, tmp_path):
    assert run(db_url, "migrate").returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "gender": "x"},
                        "request": {"method": "POST", "url": "Patient"},
                    }
                ],
            }
        )
    )
    result = run(db_url, "load", str(bad))
    assert result.returncode == 1
    assert "refused" in result.stderr
    assert counts(db_url) == {}


def test_load_of_a_missing_path_is_a_usage_error(db_url, tmp_path):
    result = run(db_url, "load", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_audit_verify_passes_on_a_clean_chain_and_names_an_altered_event(db_url):
    from sqlalchemy import update

    from carenet.audit import audit_events

    assert run(db_url, "migrate").returncode == 0
    assert run(db_url, "demo").returncode == 0  # loading is audited too
    # Write some audited requests through the API.
    from fastapi.testclient import TestClient

    from carenet.api.app import create_app
    from carenet.bootstrap import build_store
    from carenet.config import Settings

    settings = Settings(database_url=db_url)
    store = build_store(settings)
    with TestClient(create_app(settings, store)) as client:
        for _ in range(3):
            client.get("/fhir/Patient", params={"_count": "2"})
    from sqlalchemy import func, select

    with store.engine.connect() as conn:
        loaders = conn.execute(
            select(func.count())
            .select_from(audit_events)
            .where(audit_events.c.agent == "Device/carenet-cli-demo-region")
        ).scalar_one()
    assert loaders >= 200  # one per patient touched, and one for the rest
    ok = run(db_url, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with store.engine.begin() as conn:
        first = conn.execute(audit_events.select().limit(1)).mappings().one()
        conn.execute(
            update(audit_events)
            .where(audit_events.c.chain_id == first["chain_id"], audit_events.c.seq == first["seq"])
            .values(agent="Practitioner/forger")
        )
    store.engine.dispose()
    bad = run(db_url, "audit", "verify")
    assert bad.returncode == 1
    out = bad.stdout + bad.stderr
    assert "altered" in out and str(first["seq"]) in out


def test_seal_existing_seals_values_stored_in_clear_before_protection(db_url):
    from carenet.bootstrap import build_store
    from carenet.config import Settings
    from carenet.fhir.identifiers import RESIDENT_ID
    from carenet.store.uow import Store

    assert run(db_url, "migrate").returncode == 0
    settings = Settings(database_url=db_url)
    protected = build_store(settings)
    legacy = Store(protected.engine, source="urn:test", tz="Asia/Shanghai", protection=None)
    rid = "11010519491231002X"
    with legacy.unit_of_work() as uow:
        pid = uow.repo.create(
            "Patient",
            {"resourceType": "Patient", "identifier": [{"system": RESIDENT_ID, "value": rid}]},
        )["id"]
        uow.commit()
    try:
        done = run(db_url, "seal-existing")
        assert done.returncode == 0, done.stderr
        assert "sealed 1 current versions (re-indexed) and 1 history versions" in done.stderr
        with protected.engine.connect() as conn:
            content = conn.execute(select(resources.c.content)).scalar_one()
        assert rid not in content
        with protected.unit_of_work() as uow:
            assert [p["id"] for p in uow.repo.find("Patient", f"identifier={rid}")] == [pid]
        again = run(db_url, "seal-existing")
        assert "sealed 0 current versions (re-indexed) and 0 history versions" in again.stderr
    finally:
        protected.engine.dispose()
