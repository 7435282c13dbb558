"""The portals' JSON login API: staff password + TOTP enrolment and verification, patients'
SMS code login, real-name verification behind the session cookie and its CSRF token."""

from __future__ import annotations

import random
from datetime import date

from tests.integration.auth.conftest import PASSWORD, AuthEnv, codes_of

from carenet.access.accounts import register_staff
from carenet.access.totp import code_at
from carenet.adapters.notify import SandboxProvider, relay_outbox, sandbox_messages
from carenet.fhir import identifiers as ids


def _staff(env: AuthEnv) -> str:
    login = f"admin.{random.randrange(10**8)}"
    env.run(
        lambda c, r: register_staff(
            c, r, env.ctx, role="regional_admin", login_name=login, password=PASSWORD
        )
    )
    return login


def test_staff_enrol_totp_at_first_login_then_log_in_with_password_and_code(auth_env: AuthEnv):
    login = _staff(auth_env)
    r = auth_env.client.post("/auth/login", json={"login_name": login, "password": PASSWORD})
    assert r.status_code == 200
    assert r.json()["next_step"] == "totp-enrol"
    ticket = r.json()["ticket"]
    enrol = auth_env.client.post("/auth/totp/enrol", json={"ticket": ticket}).json()
    assert enrol["provisioning_uri"].startswith("otpauth://totp/")
    policy = auth_env.ctx.policy
    code = code_at(enrol["secret"], auth_env.clock(), policy)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    bad = auth_env.client.post("/auth/totp/confirm", json={"ticket": ticket, "code": wrong})
    assert (bad.status_code, codes_of(bad)) == (401, ["AUTH-TOTP-INVALID"])
    done = auth_env.client.post("/auth/totp/confirm", json={"ticket": ticket, "code": code})
    assert done.status_code == 200, done.text
    assert done.json()["next_step"] == "done"
    assert done.json()["account"]["role"] == "regional_admin"
    assert "carenet_session" in auth_env.client.cookies

    auth_env.clock.advance(60)
    r = auth_env.client.post("/auth/login", json={"login_name": login, "password": PASSWORD})
    assert r.json()["next_step"] == "totp"
    replay = auth_env.client.post(
        "/auth/totp/verify", json={"ticket": r.json()["ticket"], "code": code}
    )
    assert (replay.status_code, codes_of(replay)) == (401, ["AUTH-TOTP-INVALID"])
    fresh = code_at(enrol["secret"], auth_env.clock(), policy)
    ok = auth_env.client.post(
        "/auth/totp/verify", json={"ticket": r.json()["ticket"], "code": fresh}
    )
    assert ok.json()["next_step"] == "done"


def test_wrong_password_is_committed_as_a_failure_then_refused(auth_env: AuthEnv):
    login = _staff(auth_env)
    before = auth_env.counts("login_failures")["login_failures"]
    r = auth_env.client.post("/auth/login", json={"login_name": login, "password": "nope-nope-1"})
    assert (r.status_code, codes_of(r)) == (401, ["AUTH-BAD-CREDENTIALS"])
    assert auth_env.counts("login_failures")["login_failures"] == before + 1
    r = auth_env.client.post("/auth/totp/verify", json={"ticket": "forged.ticket", "code": "1"})
    assert (r.status_code, codes_of(r)) == (401, ["AUTH-LOGIN-TICKET-INVALID"])
    r = auth_env.client.post("/auth/login", json={"login_name": login})
    assert (r.status_code, codes_of(r)) == (400, ["AUTH-REQUEST-INVALID"])
    r = auth_env.client.post(
        "/auth/login", content=b"[1,2", headers={"content-type": "application/json"}
    )
    assert (r.status_code, codes_of(r)) == (400, ["AUTH-REQUEST-INVALID"])


def test_patient_logs_in_by_sms_code_and_verifies_real_name_with_csrf(auth_env: AuthEnv):
    phone = "13" + "".join(random.choice("0123456789") for _ in range(9))
    r = auth_env.client.post("/auth/otp/send", json={"phone": phone})
    assert r.status_code == 202
    provider = SandboxProvider(clock=auth_env.clock)
    auth_env.run(
        lambda c, _: relay_outbox(
            c, {"sms": provider}, auth_env.ctx.protector, clock=auth_env.clock
        )
    )
    with auth_env.store.engine.connect() as conn:
        code = str(sandbox_messages(conn, to=phone)[0].params["code"])
    r = auth_env.client.post("/auth/otp/verify", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    assert r.json()["account"]["realNameVerified"] is False

    rid = ids.make_resident_id("330122", date(1975, 3, 9), 122)
    before = auth_env.counts()
    no_csrf = auth_env.client.post("/auth/realname", json={"name": "张伟", "resident_id": rid})
    assert (no_csrf.status_code, codes_of(no_csrf)) == (403, ["AUTH-CSRF-INVALID"])
    bad_id = auth_env.client.post(
        "/auth/realname",
        json={"name": "张伟", "resident_id": rid[:-1] + ("0" if rid[-1] != "0" else "1")},
        headers={"X-CSRF-Token": csrf},
    )
    assert bad_id.status_code == 400
    assert auth_env.counts() == before
    ok = auth_env.client.post(
        "/auth/realname",
        json={"name": "张伟", "resident_id": rid},
        headers={"X-CSRF-Token": csrf},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["patient"].startswith("Patient/")
    me = auth_env.client.get("/auth/session").json()
    assert me["account"]["fhirUser"] == ok.json()["patient"]

    replay = auth_env.client.post("/auth/otp/verify", json={"phone": phone, "code": code})
    assert codes_of(replay) == ["AUTH-OTP-REPLAYED"]


def test_realname_without_a_session_is_refused(auth_env: AuthEnv):
    r = auth_env.client.get("/auth/session")
    assert (r.status_code, codes_of(r)) == (401, ["AUTH-SESSION-REQUIRED"])
