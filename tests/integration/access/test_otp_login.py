"""Patients' login by phone and SMS code through the outbox and the sandbox provider."""

from __future__ import annotations

from sqlalchemy import select

from carenet.access.login import LoginResult
from carenet.access.otp import login_with_code, send_login_code
from carenet.access.schema import otp_codes
from carenet.adapters.notify import SandboxProvider, notify_outbox, relay_outbox, sandbox_messages

from .conftest import Env, codes
from .fixtures import phone, staff


def send(env: Env, number: str) -> str:
    """Send a code, deliver the outbox, and return the code the sandbox 'handset' received."""
    env.run(lambda c, r: send_login_code(c, env.ctx, number))
    provider = SandboxProvider(clock=env.clock)
    env.run(lambda c, r: relay_outbox(c, {"sms": provider}, env.protector, clock=env.clock))
    with env.store.engine.connect() as conn:
        latest = sandbox_messages(conn, to=number)[0]
    assert latest.template == "login-code" and latest.params["code"] in latest.body
    return str(latest.params["code"])


def use(env: Env, number: str, code: str) -> LoginResult:
    return env.run(lambda c, r: login_with_code(c, env.ctx, number, code))


def test_first_login_by_code_registers_a_patient_account(env: Env) -> None:
    number = phone()
    code = send(env, number)
    assert len(code) == 6 and code.isdigit()
    result = use(env, "+86 " + number, code)
    assert (result.ok, result.next_step) == (True, "done")
    assert result.account is not None and result.account.role == "patient"
    env.clock.advance(61)
    again = use(env, number, send(env, number))
    assert again.account is not None and again.account.id == result.account.id


def test_a_used_code_is_refused_as_replayed(env: Env) -> None:
    number = phone()
    code = send(env, number)
    assert use(env, number, code).ok
    assert codes(use(env, number, code).error) == ["AUTH-OTP-REPLAYED"]


def test_a_code_expires_after_five_minutes(env: Env) -> None:
    number = phone()
    code = send(env, number)
    env.clock.advance(5 * 60)
    err = use(env, number, code).error
    assert codes(err) == ["AUTH-OTP-EXPIRED"]


def test_a_code_is_still_valid_just_before_expiry(env: Env) -> None:
    number = phone()
    code = send(env, number)
    env.clock.advance(5 * 60 - 0.001)
    assert use(env, number, code).ok


def test_five_wrong_attempts_void_the_code(env: Env) -> None:
    number = phone()
    code = send(env, number)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    first = use(env, number, wrong)
    assert codes(first.error) == ["AUTH-OTP-INVALID"]
    assert first.error is not None and "4 attempts left" in first.error.issues[0].diagnostics
    for _ in range(3):
        use(env, number, wrong)
    assert codes(use(env, number, wrong).error) == ["AUTH-OTP-TOO-MANY-ATTEMPTS"]
    assert codes(use(env, number, code).error) == ["AUTH-OTP-TOO-MANY-ATTEMPTS"]


def test_sending_is_limited_to_one_a_minute_and_changes_nothing_when_refused(env: Env) -> None:
    number = phone()
    send(env, number)
    before = env.counts()
    env.clock.advance(59)
    err = env.refused(lambda c, r: send_login_code(c, env.ctx, number))
    assert codes(err) == ["AUTH-OTP-RATE-LIMITED"]
    assert err.status == 429 and err.headers == {"Retry-After": "1"}
    assert env.counts() == before
    env.clock.advance(1)
    send(env, number)


def test_sending_is_limited_per_day(env: Env) -> None:
    env.ctx = env.with_policy(otp_max_per_day=3)
    number = phone()
    for _ in range(3):
        env.run(lambda c, r: send_login_code(c, env.ctx, number))
        env.clock.advance(60)
    err = env.refused(lambda c, r: send_login_code(c, env.ctx, number))
    assert codes(err) == ["AUTH-OTP-RATE-LIMITED"]
    env.clock.advance(24 * 3600 - 3 * 60)
    env.run(lambda c, r: send_login_code(c, env.ctx, number))


def test_a_new_code_supersedes_the_previous_one(env: Env) -> None:
    number = phone()
    old = send(env, number)
    env.clock.advance(60)
    new = send(env, number)
    if old != new:
        assert codes(use(env, number, old).error) == ["AUTH-OTP-INVALID"]
    assert use(env, number, new).ok


def test_codes_are_stored_only_as_hashes(env: Env) -> None:
    number = phone()
    code = send(env, number)
    with env.store.engine.connect() as conn:
        row = conn.execute(select(otp_codes)).one()
        outbox = conn.execute(select(notify_outbox)).one()
    assert code not in str(tuple(row)) and number not in str(tuple(row))
    assert code not in outbox.params_enc and number not in outbox.to_enc
    assert outbox.status == "sent"


def test_invalid_phone_and_unknown_code(env: Env) -> None:
    err = env.refused(lambda c, r: send_login_code(c, env.ctx, "12345"))
    assert codes(err) == ["AUTH-PHONE-INVALID"]
    assert codes(use(env, "123", "123456").error) == ["AUTH-PHONE-INVALID"]
    assert codes(use(env, phone(), "123456").error) == ["AUTH-OTP-INVALID"]


def test_staff_cannot_log_in_by_sms_code(env: Env) -> None:
    from carenet.access.accounts import register_staff

    from .fixtures import PASSWORD, login_name

    number = phone()
    env.run(
        lambda c, r: register_staff(
            c,
            r,
            env.ctx,
            role="regional_admin",
            login_name=login_name(),
            password=PASSWORD,
            phone=number,
        )
    )
    staff(env)  # another staff member, unrelated
    code = send(env, number)
    assert codes(use(env, number, code).error) == ["AUTH-LOGIN-METHOD-NOT-ALLOWED"]
