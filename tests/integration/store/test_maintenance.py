"""Sealing resident IDs and phone numbers that were stored in clear, on each database."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, select

from carenet.access.protector import CryptoFieldProtector
from carenet.fhir.identifiers import RESIDENT_ID
from carenet.store.maintenance import SealReport, seal_plaintext
from carenet.store.protection import ResourceProtection
from carenet.store.schema import idx_token, resource_history, resources
from carenet.store.uow import Store

ID = "11010519491231002X"
PHONE = "13800138000"


def a_store(engine: Engine, protection: ResourceProtection | None) -> Store:
    return Store(engine, source="urn:test", tz="Asia/Shanghai", protection=protection)


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": RESIDENT_ID, "value": ID}],
        "telecom": [{"system": "phone", "value": PHONE}],
    }


def write(store: Store, resource: dict) -> dict:
    with store.unit_of_work() as uow:
        stored = uow.repo.create("Patient", resource)
        uow.commit()
    return stored


def stored_text(engine: Engine) -> str:
    with engine.connect() as conn:
        return repr(
            [
                tuple(r)
                for t in (resources, resource_history, idx_token)
                for r in conn.execute(select(t))
            ]
        )


def test_rows_written_in_clear_are_sealed_and_reindexed_and_a_second_run_does_nothing(engine):
    protection = ResourceProtection(CryptoFieldProtector.from_secret(secrets.token_urlsafe(32)))
    legacy = a_store(engine, None)
    old = write(legacy, patient())
    with legacy.unit_of_work() as uow:
        uow.repo.update("Patient", old["id"], {**old, "gender": "female"})
        uow.repo.delete("Observation", write_observation(uow))  # a deletion has no content
        uow.commit()
    protected = a_store(engine, protection)
    new = write(protected, {**patient(), "telecom": [{"system": "phone", "value": "13900001111"}]})
    with engine.connect() as conn:
        new_content = conn.execute(
            select(resources.c.content).where(resources.c.res_id == new["id"])
        ).scalar_one()
    assert ID in stored_text(engine)

    assert seal_plaintext(engine, protection, tz="Asia/Shanghai", batch=2) == SealReport(1, 2)

    assert ID not in stored_text(engine) and PHONE not in stored_text(engine)
    with protected.unit_of_work() as uow:
        current = uow.repo.read("Patient", old["id"])
        assert current == {**old, "gender": "female", "meta": current["meta"]}
        assert current["meta"]["versionId"] == "2"
        assert uow.repo.vread("Patient", old["id"], "1") == old
        found = uow.repo.find("Patient", f"identifier={RESIDENT_ID}|{ID}", limit=5)
        assert sorted(r["id"] for r in found) == sorted([old["id"], new["id"]])
        assert [r["id"] for r in uow.repo.find("Patient", f"phone={PHONE}", limit=5)] == [old["id"]]
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(resources.c.content).where(resources.c.res_id == new["id"])
            ).scalar_one()
            == new_content
        )  # already sealed: not rewritten
    assert seal_plaintext(engine, protection, tz="Asia/Shanghai") == SealReport(0, 0)


def write_observation(uow) -> str:  # noqa: ANN001
    return uow.repo.create(
        "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    )["id"]
