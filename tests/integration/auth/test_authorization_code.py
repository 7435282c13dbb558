"""Apps: authorization code + PKCE through the login and consent page, code replay, refresh
token rotation, scope narrowing, SMART launch context, and the discovery document."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from tests.integration.auth.conftest import (
    BASE,
    FHIR_BASE,
    PASSWORD,
    REDIRECT,
    AuthEnv,
    basic,
    codes_of,
    pkce,
    query_of,
)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden field {name}"
    return m.group(1).replace("&amp;", "&")


def _authorize_params(client_id: str, challenge: str, scope: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-123",
        "aud": FHIR_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def _login_and_consent(env: AuthEnv, params: dict[str, str], login: str) -> Any:
    page = env.client.get("/auth/authorize?" + urlencode(params))
    assert page.status_code == 200, page.text
    assert "用户名 Login name" in page.text and "手机号码 Mobile number" in page.text
    csrf, oauth = _hidden(page.text, "csrf"), _hidden(page.text, "oauth")
    consent = env.client.post(
        "/auth/authorize",
        data={
            "csrf": csrf,
            "oauth": oauth,
            "step": "password",
            "login_name": login,
            "password": PASSWORD,
        },
    )
    assert consent.status_code == 200, consent.text
    assert "同意 Allow" in consent.text
    csrf = _hidden(consent.text, "csrf")
    return env.client.post(
        "/auth/authorize",
        data={"csrf": csrf, "oauth": oauth, "step": "consent", "decision": "approve"},
        follow_redirects=False,
    )


def _code(env: AuthEnv, client_id: str, scope: str, login: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    r = _login_and_consent(env, _authorize_params(client_id, challenge, scope), login)
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(REDIRECT + "?")
    q = query_of(r.headers["location"])
    assert q["state"] == "st-123"
    return q["code"], verifier


def _exchange(env: AuthEnv, client_id: str, code: str, verifier: str) -> Any:
    return env.client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )


def test_public_app_gets_a_patient_token_through_login_consent_and_pkce(auth_env: AuthEnv):
    client_id, secret = auth_env.app_client()
    assert secret is None
    account, login, patient_ref = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "launch/patient patient/*.rs offline_access", login)
    r = _exchange(auth_env, client_id, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == patient_ref.split("/")[1]
    assert body["scope"] == "launch/patient patient/*.rs offline_access"
    assert body["refresh_token"]
    who = auth_env.client.get(
        "/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
    ).json()
    assert who["account"] == account.id
    assert who["patient"] == patient_ref
    assert who["contexts"] == ["patient"]


def test_the_session_cookie_is_httponly_samesite_lax_and_skips_the_login_next_time(
    auth_env: AuthEnv,
):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    _code(auth_env, client_id, "patient/*.rs", login)
    cookie = [h for h in auth_env.client.cookies.jar if h.name == "carenet_session"][0]
    assert cookie.has_nonstandard_attr("HttpOnly")
    _, challenge = pkce()
    page = auth_env.client.get(
        "/auth/authorize?" + urlencode(_authorize_params(client_id, challenge, "patient/*.rs"))
    )
    assert "同意 Allow" in page.text and "Password" not in page.text


def test_wrong_verifier_is_refused_and_the_code_still_unused(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs", login)
    before = auth_env.counts()
    wrong = verifier[:-1] + ("A" if verifier[-1] != "A" else "B")
    r = _exchange(auth_env, client_id, code, wrong)
    assert (r.status_code, r.json()["error"], r.json()["code"]) == (
        400,
        "invalid_grant",
        "OAUTH-INVALID-GRANT",
    )
    r = _exchange(auth_env, client_id, code, "")
    assert r.status_code == 400
    assert auth_env.counts() == before
    assert _exchange(auth_env, client_id, code, verifier).status_code == 200


def test_code_replay_is_refused_and_revokes_the_tokens_of_the_first_exchange(
    auth_env: AuthEnv,
):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs offline_access", login)
    first = _exchange(auth_env, client_id, code, verifier).json()
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert auth_env.client.get("/whoami", headers=bearer).status_code == 200
    tokens_before = auth_env.counts("oauth_tokens")
    replay = _exchange(auth_env, client_id, code, verifier)
    assert (replay.status_code, replay.json()["code"]) == (400, "OAUTH-INVALID-GRANT")
    assert auth_env.counts("oauth_tokens") == tokens_before  # nothing new issued
    r = auth_env.client.get("/whoami", headers=bearer)
    assert (r.status_code, codes_of(r)) == (401, ["OAUTH-TOKEN-INVALID"])
    refresh = auth_env.client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refresh.json()["code"] == "OAUTH-INVALID-GRANT"


def test_an_expired_code_is_refused(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs", login)
    auth_env.clock.advance(121)
    r = _exchange(auth_env, client_id, code, verifier)
    assert r.json()["code"] == "OAUTH-INVALID-GRANT"


def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, patient_ref = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs offline_access", login)
    first = _exchange(auth_env, client_id, code, verifier).json()

    def refresh(token: str, **extra: str) -> Any:
        return auth_env.client.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": client_id,
                **extra,
            },
        )

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"]
    assert second_body["patient"] == patient_ref.split("/")[1]
    old_bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert auth_env.client.get("/whoami", headers=old_bearer).status_code == 401

    reused = refresh(first["refresh_token"])
    assert (reused.status_code, reused.json()["code"]) == (400, "OAUTH-INVALID-GRANT")
    # Presenting a rotated refresh token again means it was stolen: the newer pair ends too.
    new_bearer = {"Authorization": f"Bearer {second_body['access_token']}"}
    assert auth_env.client.get("/whoami", headers=new_bearer).status_code == 401
    assert refresh(second_body["refresh_token"]).json()["code"] == "OAUTH-INVALID-GRANT"


def test_refresh_may_narrow_but_not_widen_the_scope(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client(scope="patient/*.cruds offline_access")
    _, login, _ = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs offline_access", login)
    first = _exchange(auth_env, client_id, code, verifier).json()
    before = auth_env.counts()
    wider = auth_env.client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
            "scope": "patient/*.cruds offline_access",
        },
    )
    assert (wider.status_code, wider.json()["code"]) == (400, "OAUTH-INVALID-SCOPE")
    assert auth_env.counts() == before
    narrower = auth_env.client.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
            "scope": "patient/*.rs offline_access",
        },
    )
    assert narrower.status_code == 200


def test_authorize_refuses_wider_scopes_missing_pkce_plain_pkce_and_wrong_aud(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client(scope="patient/Observation.rs")
    _, challenge = pkce()
    before = auth_env.counts()
    cases = [
        (_authorize_params(client_id, challenge, "patient/*.rs"), "invalid_scope"),
        (_authorize_params(client_id, challenge, "patient/Observation.cruds"), "invalid_scope"),
        (_authorize_params(client_id, challenge, "system/Observation.rs"), "invalid_scope"),
        (_authorize_params(client_id, challenge, "patient/Foo.rs"), "invalid_scope"),
        (_authorize_params(client_id, "", "patient/Observation.rs"), "invalid_request"),
        (
            _authorize_params(
                client_id, challenge, "patient/Observation.rs", code_challenge_method="plain"
            ),
            "invalid_request",
        ),
        (
            _authorize_params(
                client_id, challenge, "patient/Observation.rs", aud="https://evil/fhir"
            ),
            "invalid_request",
        ),
    ]
    for params, error in cases:
        r = auth_env.client.get("/auth/authorize?" + urlencode(params), follow_redirects=False)
        assert r.status_code == 302, params
        q = query_of(r.headers["location"])
        assert r.headers["location"].startswith(REDIRECT)
        assert (q["error"], q["state"]) == (error, "st-123"), params
    ok = auth_env.client.get(
        "/auth/authorize?"
        + urlencode(_authorize_params(client_id, challenge, "patient/Observation.r"))
    )
    assert ok.status_code == 200  # narrower than the client's scope is fine
    assert auth_env.counts() == before


def test_unknown_client_or_unregistered_redirect_gets_an_error_page_not_a_redirect(
    auth_env: AuthEnv,
):
    client_id, _ = auth_env.app_client()
    _, challenge = pkce()
    for params in (
        _authorize_params("nope", challenge, "patient/*.rs"),
        _authorize_params(client_id, challenge, "patient/*.rs", redirect_uri="https://evil/cb"),
    ):
        r = auth_env.client.get("/auth/authorize?" + urlencode(params), follow_redirects=False)
        assert r.status_code == 400
        assert "OAUTH-INVALID-" in r.text
        assert "location" not in r.headers


def test_wrong_password_on_the_page_is_shown_beside_the_form_and_counted(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    _, challenge = pkce()
    page = auth_env.client.get(
        "/auth/authorize?" + urlencode(_authorize_params(client_id, challenge, "patient/*.rs"))
    )
    csrf, oauth = _hidden(page.text, "csrf"), _hidden(page.text, "oauth")
    failures = auth_env.counts("login_failures")["login_failures"]
    r = auth_env.client.post(
        "/auth/authorize",
        data={
            "csrf": csrf,
            "oauth": oauth,
            "step": "password",
            "login_name": login,
            "password": "wrong-passw0rd",
        },
    )
    assert r.status_code == 401
    assert "用户名或密码错误" in r.text
    assert auth_env.counts("login_failures")["login_failures"] == failures + 1
    assert "carenet_session" not in auth_env.client.cookies


def test_a_post_without_the_csrf_token_is_refused(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    _, challenge = pkce()
    page = auth_env.client.get(
        "/auth/authorize?" + urlencode(_authorize_params(client_id, challenge, "patient/*.rs"))
    )
    oauth = _hidden(page.text, "oauth")
    before = auth_env.counts()
    r = auth_env.client.post(
        "/auth/authorize",
        data={
            "csrf": "forged",
            "oauth": oauth,
            "step": "password",
            "login_name": login,
            "password": PASSWORD,
        },
    )
    assert r.status_code == 403
    assert "AUTH-CSRF-INVALID" in r.text
    assert auth_env.counts() == before


def test_deny_redirects_with_access_denied_and_issues_no_code(auth_env: AuthEnv):
    client_id, _ = auth_env.app_client()
    _, login, _ = auth_env.patient()
    verifier, challenge = pkce()
    params = _authorize_params(client_id, challenge, "patient/*.rs")
    page = auth_env.client.get("/auth/authorize?" + urlencode(params))
    csrf, oauth = _hidden(page.text, "csrf"), _hidden(page.text, "oauth")
    consent = auth_env.client.post(
        "/auth/authorize",
        data={
            "csrf": csrf,
            "oauth": oauth,
            "step": "password",
            "login_name": login,
            "password": PASSWORD,
        },
    )
    r = auth_env.client.post(
        "/auth/authorize",
        data={
            "csrf": _hidden(consent.text, "csrf"),
            "oauth": oauth,
            "step": "consent",
            "decision": "deny",
        },
        follow_redirects=False,
    )
    assert r.status_code == 302
    assert query_of(r.headers["location"])["error"] == "access_denied"
    assert auth_env.counts("oauth_codes")["oauth_codes"] == 0


def test_confidential_app_authenticates_at_the_token_endpoint(auth_env: AuthEnv):
    client_id, secret = auth_env.app_client(kind="confidential")
    assert secret is not None
    _, login, _ = auth_env.patient()
    code, verifier = _code(auth_env, client_id, "patient/*.rs", login)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    r = auth_env.client.post("/auth/token", data=data)  # no secret: refused
    assert r.json()["code"] == "OAUTH-INVALID-CLIENT"
    r = auth_env.client.post("/auth/token", data=data, headers=basic(client_id, secret))
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()  # no offline_access / online_access asked


def test_smart_configuration_lists_what_the_server_implements(auth_env: AuthEnv):
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        conf = auth_env.client.get(path).json()
        assert conf["issuer"] == BASE
        assert conf["authorization_endpoint"] == f"{BASE}/auth/authorize"
        assert conf["token_endpoint"] == f"{BASE}/auth/token"
        assert conf["revocation_endpoint"] == f"{BASE}/auth/revoke"
        assert conf["introspection_endpoint"] == f"{BASE}/auth/introspect"
        assert conf["code_challenge_methods_supported"] == ["S256"]
        assert conf["grant_types_supported"] == [
            "authorization_code",
            "client_credentials",
            "refresh_token",
        ]
        assert conf["response_types_supported"] == ["code"]
        assert set(conf["token_endpoint_auth_methods_supported"]) == {
            "client_secret_basic",
            "client_secret_post",
            "none",
        }
        assert {
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "permission-v2",
            "permission-v1",
            "context-standalone-patient",
        } <= set(conf["capabilities"])
        assert "sso-openid-connect" not in conf["capabilities"]
        assert "launch-ehr" not in conf["capabilities"]
