"""Real-name verification: resident ID checks, one Patient per resident ID, no duplicates even
under concurrency, and nothing changed by a refusal."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from carenet.access.accounts import Account, register_patient, require_real_name
from carenet.access.realname import resolve_patient, verify_real_name
from carenet.access.schema import resident_index
from carenet.fhir import identifiers as ids
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.schema import resources

from .conftest import Env, codes
from .fixtures import phone, resident_id


def patient_account(env: Env) -> Account:
    return env.run(lambda c, r: register_patient(c, env.ctx, phone=phone()))


def patients(env: Env) -> int:
    with env.store.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(resources).where(resources.c.res_type == "Patient")
        ).scalar_one()


def test_verification_creates_the_patient_and_binds_the_account(env: Env) -> None:
    account = patient_account(env)
    rid = resident_id(date(1990, 3, 7), sex="male")
    result = env.run(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "李明", rid))
    assert result.created_patient and result.account.real_name_verified
    assert result.account.fhir_ref == result.patient_ref
    patient = env.run(lambda c, r: r.read("Patient", result.patient_ref.split("/")[1]))
    assert patient["identifier"][0]["system"] == ids.RESIDENT_ID
    assert patient["identifier"][0]["value"] == rid
    assert (patient["gender"], patient["birthDate"]) == ("male", "1990-03-07")
    assert patient["name"][0]["text"] == "李明"
    assert env.run(lambda c, r: require_real_name(c, account.id)) == result.patient_ref
    again = env.run(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "李明", rid))
    assert (again.patient_ref, again.created_patient) == (result.patient_ref, False)


def test_clinical_actions_need_real_name_first(env: Env) -> None:
    account = patient_account(env)
    err = env.refused(lambda c, r: require_real_name(c, account.id))
    assert (err.status, codes(err)) == (403, ["AUTH-REALNAME-REQUIRED"])


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("11010519491231002Y", "ID-RESIDENT-FORMAT"),
        ("110105194912310021", "ID-RESIDENT-CHECK-DIGIT"),
        (ids.make_resident_id("330122", date(2000, 2, 28), 12)[:10] + "0230" + "0120", None),
        (ids.make_resident_id("330122", date(2026, 1, 16), 12), "ID-RESIDENT-BIRTH-DATE-FUTURE"),
    ],
    ids=["format", "check-digit", "february-30", "future-birth-date"],
)
def test_invalid_resident_ids_are_refused_and_change_nothing(
    env: Env, value: str, code: str | None
) -> None:
    if code is None:  # 2000-02-30 with a correct check digit, so only the date is wrong
        value = value[:17] + ids.resident_id_check_digit(value[:17])
        code = "ID-RESIDENT-BIRTH-DATE"
    account = patient_account(env)
    before = env.counts()
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "李明", value))
    assert err.status == 400 and codes(err) == [code]
    assert env.counts() == before


def test_name_errors_and_id_errors_are_reported_together(env: Env) -> None:
    account = patient_account(env)
    err = env.refused(
        lambda c, r: verify_real_name(c, r, env.ctx, account.id, "李明2", "110105194912310021")
    )
    assert codes(err) == ["AUTH-REALNAME-NAME-INVALID", "ID-RESIDENT-CHECK-DIGIT"]


def test_the_same_resident_id_resolves_to_the_same_patient(env: Env) -> None:
    rid = resident_id(date(2018, 6, 1))
    first = env.run(lambda c, r: resolve_patient(c, r, env.ctx, "王小丫", rid))
    second = env.run(lambda c, r: resolve_patient(c, r, env.ctx, "王小丫", rid))
    assert first.created and not second.created
    assert first.patient_id == second.patient_id
    assert patients(env) == 1


def test_an_existing_patient_with_the_resident_id_is_reused_and_indexed(env: Env) -> None:
    rid = resident_id(date(1950, 1, 1), sex="male")
    existing = env.run(
        lambda c, r: r.create(
            "Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"system": ids.RESIDENT_ID, "value": rid}],
                "name": [{"family": "赵", "given": ["大山"]}],
            },
        )
    )
    account = patient_account(env)
    result = env.run(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "赵大山", rid))
    assert result.patient_ref == f"Patient/{existing['id']}" and not result.created_patient
    assert patients(env) == 1
    assert env.counts()["resident_index"] == 1


def test_a_name_that_differs_from_the_patient_is_refused(env: Env) -> None:
    rid = resident_id(date(1980, 1, 1))
    env.run(lambda c, r: resolve_patient(c, r, env.ctx, "陈静", rid))
    account = patient_account(env)
    before = env.counts()
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "陈晶", rid))
    assert codes(err) == ["AUTH-REALNAME-MISMATCH"]
    assert env.counts() == before


def test_a_resident_id_binds_one_account_only(env: Env) -> None:
    rid = resident_id(date(1980, 1, 1))
    first, second = patient_account(env), patient_account(env)
    env.run(lambda c, r: verify_real_name(c, r, env.ctx, first.id, "陈静", rid))
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, second.id, "陈静", rid))
    assert codes(err) == ["AUTH-REALNAME-ALREADY-BOUND"]
    other = resident_id(date(1981, 1, 1))
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, first.id, "陈静", other))
    assert codes(err) == ["AUTH-REALNAME-ALREADY-VERIFIED"]


def test_unknown_region_warns_unless_the_policy_blocks_it(env: Env) -> None:
    env.ctx = env.with_policy()
    from dataclasses import replace

    env.ctx = replace(env.ctx, known_region={"330122"})
    rid = resident_id(date(1980, 1, 1), region="110105")
    account = patient_account(env)
    result = env.run(lambda c, r: verify_real_name(c, r, env.ctx, account.id, "陈静", rid))
    assert [w.code for w in result.warnings] == ["ID-RESIDENT-REGION-UNKNOWN"]
    env.ctx = replace(env.with_policy(block_unknown_region=True), known_region={"330122"})
    other = patient_account(env)
    rid2 = resident_id(date(1981, 1, 1), region="110105")
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, other.id, "陈静", rid2))
    assert codes(err) == ["ID-RESIDENT-REGION-UNKNOWN"]


def test_only_patient_accounts_verify_a_real_name(env: Env) -> None:
    from .fixtures import staff

    doctor = staff(env)
    rid = resident_id(date(1980, 1, 1))
    err = env.refused(lambda c, r: verify_real_name(c, r, env.ctx, doctor.id, "陈静", rid))
    assert codes(err) == ["AUTH-REALNAME-NOT-APPLICABLE"]


def test_concurrent_resolutions_of_one_resident_id_create_one_patient(env: Env) -> None:
    rid = resident_id(date(2019, 9, 9))
    results: list[str] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        try:
            barrier.wait()
            resolved = env.run(lambda c, r: resolve_patient(c, r, env.ctx, "周小雨", rid))
            results.append(resolved.patient_id)
        except (OperationOutcomeError, Exception) as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(results) == 6 and len(set(results)) == 1
    assert patients(env) == 1
    with env.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(resident_index)).scalar_one() == 1
