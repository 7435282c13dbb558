"""Backend services: client credentials → bearer token → introspection → revocation, and the
resource server's refusal of forged, expired and revoked tokens."""

from __future__ import annotations

from tests.integration.auth.conftest import BASE, AuthEnv, basic, codes_of

from carenet.access.clients import set_client_status

TOKEN = "/auth/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _token(env: AuthEnv, client_id: str, secret: str, **extra: str):  # noqa: ANN202
    return env.client.post(
        TOKEN,
        data={"grant_type": "client_credentials", **extra},
        headers=basic(client_id, secret),
    )


def test_client_credentials_token_is_introspected_active_then_inactive_after_revocation(
    auth_env: AuthEnv,
):
    client_id, secret = auth_env.system_client("system/*.rs system/Task.cruds")
    r = _token(auth_env, client_id, secret, scope="system/Observation.rs")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "system/Observation.rs"
    assert "refresh_token" not in body
    assert r.headers["cache-control"] == "no-store"
    token = body["access_token"]

    r = auth_env.client.post(
        "/auth/introspect", data={"token": token}, headers=basic(client_id, secret)
    )
    info = r.json()
    assert info["active"] is True
    assert info["client_id"] == client_id
    assert info["scope"] == "system/Observation.rs"
    assert info["iss"] == BASE
    assert info["exp"] - info["iat"] == 3600

    who = auth_env.client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert who == {
        "account": None,
        "client": client_id,
        "scope": "system/Observation.rs",
        "patient": None,
        "contexts": ["system"],
    }

    r = auth_env.client.post(
        "/auth/revoke", data={"token": token}, headers=basic(client_id, secret)
    )
    assert r.status_code == 200
    r = auth_env.client.post(
        "/auth/introspect", data={"token": token}, headers=basic(client_id, secret)
    )
    assert r.json() == {"active": False}
    r = auth_env.client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert codes_of(r) == ["OAUTH-TOKEN-INVALID"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_client_secret_post_works_like_basic_and_no_scope_means_all_the_client_may_have(
    auth_env: AuthEnv,
):
    client_id, secret = auth_env.system_client("system/*.cruds")
    r = auth_env.client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/*.cruds"


def test_wrong_secret_unknown_client_and_wider_scope_are_refused_and_issue_nothing(
    auth_env: AuthEnv,
):
    client_id, secret = auth_env.system_client("system/Observation.rs")
    before = auth_env.counts()
    r = _token(auth_env, client_id, secret + "x")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.json()["code"] == "OAUTH-INVALID-CLIENT"
    r = _token(auth_env, "no-such-client", secret)
    assert (r.status_code, r.json()["code"]) == (401, "OAUTH-INVALID-CLIENT")
    for scope in ("system/*.rs", "system/Observation.cruds", "patient/Observation.rs", "bogus"):
        r = _token(auth_env, client_id, secret, scope=scope)
        assert r.status_code == 400, scope
        assert (r.json()["error"], r.json()["code"]) == ("invalid_scope", "OAUTH-INVALID-SCOPE")
    r = _token(auth_env, client_id, secret, scope="system/Observation.r")
    assert r.status_code == 200  # narrower is fine
    after = auth_env.counts()
    assert after["oauth_tokens"] == before["oauth_tokens"] + 1
    assert {k: v for k, v in after.items() if k != "oauth_tokens"} == {
        k: v for k, v in before.items() if k != "oauth_tokens"
    }


def test_unsupported_grant_and_non_form_body_are_coded_errors(auth_env: AuthEnv):
    client_id, secret = auth_env.system_client()
    r = auth_env.client.post(
        TOKEN, data={"grant_type": "password"}, headers=basic(client_id, secret)
    )
    assert (r.status_code, r.json()["code"]) == (400, "OAUTH-UNSUPPORTED-GRANT-TYPE")
    r = auth_env.client.post(TOKEN, json={"grant_type": "client_credentials"})
    assert (r.status_code, r.json()["code"]) == (400, "OAUTH-INVALID-REQUEST")


def test_forged_expired_malformed_and_disabled_client_tokens_are_refused(auth_env: AuthEnv):
    client_id, secret = auth_env.system_client()
    token = _token(auth_env, client_id, secret).json()["access_token"]

    def who(header: str):  # noqa: ANN202
        return auth_env.client.get("/whoami", headers={"Authorization": header})

    assert who(f"Bearer {token}").status_code == 200
    assert auth_env.client.get("/whoami").json() == {"anonymous": True}
    forged = who(f"Bearer {token[:-2]}xy")
    assert (forged.status_code, codes_of(forged)) == (401, ["OAUTH-TOKEN-INVALID"])
    malformed = who(f"Basic {token}")
    assert (malformed.status_code, codes_of(malformed)) == (401, ["OAUTH-TOKEN-MALFORMED"])
    assert 'error="invalid_request"' in malformed.headers["www-authenticate"]

    auth_env.clock.advance(3599)
    assert who(f"Bearer {token}").status_code == 200
    auth_env.clock.advance(1)
    expired = who(f"Bearer {token}")
    assert (expired.status_code, codes_of(expired)) == (401, ["OAUTH-TOKEN-EXPIRED"])
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    r = auth_env.client.post(
        "/auth/introspect", data={"token": token}, headers=basic(client_id, secret)
    )
    assert r.json() == {"active": False}

    fresh = _token(auth_env, client_id, secret).json()["access_token"]
    auth_env.run(lambda c, r: set_client_status(c, client_id, "disabled", clock=auth_env.clock))
    r = who(f"Bearer {fresh}")
    assert (r.status_code, codes_of(r)) == (401, ["OAUTH-TOKEN-INVALID"])
    r = _token(auth_env, client_id, secret)
    assert r.json()["code"] == "OAUTH-INVALID-CLIENT"


def test_a_client_cannot_introspect_or_revoke_another_clients_token(auth_env: AuthEnv):
    a_id, a_secret = auth_env.system_client()
    b_id, b_secret = auth_env.system_client()
    token = _token(auth_env, a_id, a_secret).json()["access_token"]
    r = auth_env.client.post(
        "/auth/introspect", data={"token": token}, headers=basic(b_id, b_secret)
    )
    assert r.json() == {"active": False}
    r = auth_env.client.post("/auth/revoke", data={"token": token}, headers=basic(b_id, b_secret))
    assert (r.status_code, r.json()["code"]) == (400, "OAUTH-INVALID-GRANT")
    r = auth_env.client.post(
        "/auth/introspect", data={"token": token}, headers=basic(a_id, a_secret)
    )
    assert r.json()["active"] is True


def test_revoking_an_unknown_token_answers_200_and_changes_nothing(auth_env: AuthEnv):
    client_id, secret = auth_env.system_client()
    before = auth_env.counts()
    r = auth_env.client.post(
        "/auth/revoke", data={"token": "never-issued"}, headers=basic(client_id, secret)
    )
    assert r.status_code == 200
    assert auth_env.counts() == before
