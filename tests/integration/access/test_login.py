"""Password login, throttling and lockout, the staff TOTP second factor, on both stores."""

from __future__ import annotations

from sqlalchemy import select

from carenet.access.accounts import register_patient, register_staff, set_account_status
from carenet.access.login import (
    LoginResult,
    begin_totp_enrolment,
    confirm_totp_enrolment,
    login_with_password,
    reset_totp,
    verify_totp,
)
from carenet.access.schema import accounts
from carenet.access.totp import code_at

from .conftest import Env, codes
from .fixtures import PASSWORD, login_name, phone, practitioner, staff


def login(env: Env, name: str, password: str, totp: str | None = None) -> LoginResult:
    return env.run(lambda c, r: login_with_password(c, env.ctx, name, password, totp_code=totp))


def enrol(env: Env, account_id: str) -> str:
    """Enrol TOTP for the account; returns the secret."""
    enrolment = env.run(lambda c, r: begin_totp_enrolment(c, env.ctx, account_id))
    code = code_at(enrolment.secret, env.clock(), env.ctx.policy)
    result = env.run(lambda c, r: confirm_totp_enrolment(c, env.ctx, account_id, code))
    assert result.ok and result.next_step == "done"
    env.clock.advance(30)  # the enrolment code's step is used up
    return enrolment.secret


def test_wrong_password_is_refused_with_bad_credentials(env: Env) -> None:
    account = staff(env)
    result = login(env, account.login_name or "", "wrong-passw0rd")
    assert codes(result.error) == ["AUTH-BAD-CREDENTIALS"]
    assert result.error is not None and result.error.status == 401
    assert result.account is None


def test_unknown_user_is_indistinguishable_from_wrong_password(env: Env) -> None:
    account = staff(env)
    known = [login(env, account.login_name or "", "wrong-passw0rd") for _ in range(6)]
    unknown = [login(env, "nobody.here", "wrong-passw0rd") for _ in range(6)]
    for a, b in zip(known, unknown, strict=True):
        assert a.error is not None and b.error is not None
        assert (a.error.status, a.error.to_outcome(), a.error.headers) == (
            b.error.status,
            b.error.to_outcome(),
            b.error.headers,
        )
    assert codes(known[-1].error) == ["AUTH-LOCKED"]


def test_lockout_after_five_failures_applies_even_to_the_right_password(env: Env) -> None:
    account = staff(env)
    name = account.login_name or ""
    for _ in range(5):
        assert codes(login(env, name, "wrong-passw0rd").error) == ["AUTH-BAD-CREDENTIALS"]
    locked = login(env, name, PASSWORD)
    assert codes(locked.error) == ["AUTH-LOCKED"]
    assert locked.error is not None and locked.error.status == 429
    assert locked.error.headers == {"Retry-After": "900"}
    env.clock.advance(15 * 60 - 1)
    assert codes(login(env, name, PASSWORD).error) == ["AUTH-LOCKED"]
    env.clock.advance(1)
    unlocked = login(env, name, PASSWORD)
    assert unlocked.ok and unlocked.next_step == "totp-enrol"


def test_failures_outside_the_window_do_not_add_up(env: Env) -> None:
    account = staff(env)
    name = account.login_name or ""
    for _ in range(4):
        login(env, name, "wrong-passw0rd")
    env.clock.advance(15 * 60 + 1)
    for _ in range(4):
        assert codes(login(env, name, "wrong-passw0rd").error) == ["AUTH-BAD-CREDENTIALS"]
    assert login(env, name, PASSWORD).ok


def test_lockout_parameters_come_from_the_policy(env: Env) -> None:
    env.ctx = env.with_policy(max_failed_logins=2, lockout_seconds=60)
    account = staff(env)
    name = account.login_name or ""
    login(env, name, "wrong-passw0rd")
    login(env, name, "wrong-passw0rd")
    assert codes(login(env, name, PASSWORD).error) == ["AUTH-LOCKED"]
    env.clock.advance(60)
    assert login(env, name, PASSWORD).ok


def test_staff_must_enrol_and_then_give_a_totp_code(env: Env) -> None:
    account = staff(env, "pharmacist")
    name = account.login_name or ""
    first = login(env, name, PASSWORD)
    assert (first.ok, first.next_step) == (True, "totp-enrol")
    secret = enrol(env, account.id)
    second = login(env, name, PASSWORD)
    assert (second.ok, second.next_step) == (True, "totp")
    wrong = env.run(lambda c, r: verify_totp(c, env.ctx, account.id, "000000"))
    if code_at(secret, env.clock(), env.ctx.policy) != "000000":
        assert codes(wrong.error) == ["AUTH-TOTP-INVALID"]
    code = code_at(secret, env.clock(), env.ctx.policy)
    done = env.run(lambda c, r: verify_totp(c, env.ctx, account.id, code))
    assert (done.ok, done.next_step) == (True, "done")
    assert done.account is not None and done.account.totp_enrolled


def test_one_shot_staff_login_with_totp_code(env: Env) -> None:
    account = staff(env, "regulator")
    secret = enrol(env, account.id)
    code = code_at(secret, env.clock(), env.ctx.policy)
    result = login(env, account.login_name or "", PASSWORD, code)
    assert (result.ok, result.next_step) == (True, "done")


def test_a_totp_code_cannot_be_used_twice_in_its_window(env: Env) -> None:
    account = staff(env)
    secret = enrol(env, account.id)
    code = code_at(secret, env.clock(), env.ctx.policy)
    assert env.run(lambda c, r: verify_totp(c, env.ctx, account.id, code)).ok
    env.clock.advance(20)  # still within the ±1 step window
    replay = env.run(lambda c, r: verify_totp(c, env.ctx, account.id, code))
    assert codes(replay.error) == ["AUTH-TOTP-REPLAYED"]
    earlier = code_at(secret, env.clock() - 30_000, env.ctx.policy)
    assert codes(env.run(lambda c, r: verify_totp(c, env.ctx, account.id, earlier)).error) in (
        ["AUTH-TOTP-REPLAYED"],
        ["AUTH-TOTP-INVALID"],
    )
    env.clock.advance(30)
    fresh = code_at(secret, env.clock(), env.ctx.policy)
    assert env.run(lambda c, r: verify_totp(c, env.ctx, account.id, fresh)).ok


def test_wrong_totp_codes_count_towards_the_lockout(env: Env) -> None:
    account = staff(env)
    secret = enrol(env, account.id)
    right = code_at(secret, env.clock(), env.ctx.policy)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        env.run(lambda c, r: verify_totp(c, env.ctx, account.id, wrong))
    locked = env.run(lambda c, r: verify_totp(c, env.ctx, account.id, right))
    assert codes(locked.error) == ["AUTH-LOCKED"]
    assert codes(login(env, account.login_name or "", PASSWORD).error) == ["AUTH-LOCKED"]


def test_enrolment_cannot_replace_an_enrolled_authenticator_without_a_reset(env: Env) -> None:
    account = staff(env)
    enrol(env, account.id)
    err = env.refused(lambda c, r: begin_totp_enrolment(c, env.ctx, account.id))
    assert codes(err) == ["AUTH-TOTP-ALREADY-ENROLLED"]
    env.run(lambda c, r: reset_totp(c, env.ctx, account.id))
    assert login(env, account.login_name or "", PASSWORD).next_step == "totp-enrol"


def test_confirming_without_a_pending_enrolment_is_refused(env: Env) -> None:
    account = staff(env)
    result = env.run(lambda c, r: confirm_totp_enrolment(c, env.ctx, account.id, "123456"))
    assert codes(result.error) == ["AUTH-TOTP-NO-PENDING-ENROLMENT"]


def test_totp_secret_is_stored_encrypted(env: Env) -> None:
    account = staff(env)
    secret = enrol(env, account.id)
    with env.store.engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.id == account.id)).one()
    assert secret not in row.totp_secret_enc
    assert env.protector.decrypt(row.totp_secret_enc, field="totp_secret") == secret


def test_patients_with_a_password_need_no_second_factor(env: Env) -> None:
    name = login_name("patient")
    env.run(
        lambda c, r: register_patient(c, env.ctx, phone=phone(), login_name=name, password=PASSWORD)
    )
    result = login(env, name, PASSWORD)
    assert (result.ok, result.next_step) == (True, "done")


def test_inactive_accounts_are_told_only_to_who_knows_the_password(env: Env) -> None:
    account = staff(env)
    env.run(lambda c, r: set_account_status(c, env.ctx, account.id, "suspended"))
    assert codes(login(env, account.login_name or "", "wrong-passw0rd").error) == [
        "AUTH-BAD-CREDENTIALS"
    ]
    refused = login(env, account.login_name or "", PASSWORD)
    assert codes(refused.error) == ["AUTH-ACCOUNT-INACTIVE"]
    env.run(lambda c, r: set_account_status(c, env.ctx, account.id, "active"))
    assert login(env, account.login_name or "", PASSWORD).ok


def test_password_is_rehashed_when_the_parameters_change(env: Env) -> None:
    account = staff(env)
    with env.store.engine.connect() as conn:
        before = conn.execute(select(accounts.c.password_hash).where(accounts.c.id == account.id))
        old_hash = before.scalar_one()
    env.ctx = env.with_policy(argon2_time_cost=2)
    assert login(env, account.login_name or "", PASSWORD).ok
    with env.store.engine.connect() as conn:
        new_hash = conn.execute(
            select(accounts.c.password_hash).where(accounts.c.id == account.id)
        ).scalar_one()
    assert new_hash != old_hash and "t=2" in new_hash and "t=1" in old_hash
    assert login(env, account.login_name or "", PASSWORD).ok


def test_registration_refusals_change_nothing(env: Env) -> None:
    doctor = staff(env)
    pract, _ = practitioner(env)
    before = env.counts()

    def register(**kw: object):  # noqa: ANN202
        args = {"role": "doctor", "login_name": login_name(), "password": PASSWORD}
        args.update(kw)
        return lambda c, r: register_staff(c, r, env.ctx, practitioner_ref=pract, **args)

    assert codes(env.refused(register(login_name=doctor.login_name))) == ["AUTH-LOGIN-NAME-TAKEN"]
    assert codes(env.refused(register(password="short1"))) == ["AUTH-PASSWORD-WEAK"]
    assert codes(env.refused(register(login_name="x"))) == ["AUTH-LOGIN-NAME-INVALID"]
    assert codes(env.refused(register(role="patient"))) == ["AUTH-ROLE-INVALID"]
    assert codes(env.refused(register(phone="12345"))) == ["AUTH-PHONE-INVALID"]
    no_pract = lambda c, r: register_staff(  # noqa: E731
        c, r, env.ctx, role="nurse", login_name=login_name(), password=PASSWORD
    )
    assert codes(env.refused(no_pract)) == ["AUTH-REFERENCE-INVALID"]
    assert env.counts() == before


def test_phone_numbers_are_stored_as_ciphertext_and_blind_index(env: Env) -> None:
    number = phone()
    account = env.run(lambda c, r: register_patient(c, env.ctx, phone=number))
    with env.store.engine.connect() as conn:
        row = conn.execute(select(accounts).where(accounts.c.id == account.id)).one()
    assert number not in row.phone_enc and number not in row.phone_index
    assert row.phone_index == env.protector.blind_index(number, field="phone")
    err = env.refused(lambda c, r: register_patient(c, env.ctx, phone=number))
    assert codes(err) == ["AUTH-PHONE-TAKEN"]
