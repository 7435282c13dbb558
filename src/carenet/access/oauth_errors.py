"""Coded refusals of the OAuth2 / SMART server and of bearer-token checks.

Two shapes: the token, revocation and introspection endpoints answer in RFC 6749 §5.2 form
(``{"error": "invalid_grant", "error_description": ...}``, which every OAuth client library
expects) plus our stable ``code``; a refused bearer token on the FHIR API is an
OperationOutcome (401/403) with ``WWW-Authenticate: Bearer error="..."`` (RFC 6750 §3).
"""

from __future__ import annotations

from carenet.access.errors import auth_error
from carenet.fhir.outcomes import OperationOutcomeError

#: RFC 6749 error → our stable code, for the token endpoint's answers.
OAUTH_CODES: dict[str, str] = {
    "invalid_request": "OAUTH-INVALID-REQUEST",
    "invalid_client": "OAUTH-INVALID-CLIENT",
    "invalid_grant": "OAUTH-INVALID-GRANT",
    "unauthorized_client": "OAUTH-UNAUTHORIZED-CLIENT",
    "unsupported_grant_type": "OAUTH-UNSUPPORTED-GRANT-TYPE",
    "unsupported_response_type": "OAUTH-UNSUPPORTED-RESPONSE-TYPE",
    "invalid_scope": "OAUTH-INVALID-SCOPE",
    "access_denied": "OAUTH-ACCESS-DENIED",
    "unsupported_token_type": "OAUTH-UNSUPPORTED-TOKEN-TYPE",
    "server_error": "OAUTH-SERVER-ERROR",
}


def _bearer(error: str, description: str) -> dict[str, str]:
    # RFC 6750 §3: the description is a quoted-string; keep it ASCII and quote-free.
    safe = description.encode("ascii", "replace").decode().replace('"', "'")
    return {
        "WWW-Authenticate": f'Bearer realm="carenet", error="{error}", error_description="{safe}"'
    }


def token_missing() -> OperationOutcomeError:
    """No credentials at all where a token is required (RFC 6750 §3.1: no error code)."""
    return auth_error(
        401,
        "login",
        "OAUTH-TOKEN-MISSING",
        "需要访问令牌",
        "an access token is required",
        headers={"WWW-Authenticate": 'Bearer realm="carenet"'},
    )


def token_malformed() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "OAUTH-TOKEN-MALFORMED",
        "Authorization 请求头格式错误，应为 Bearer 令牌",
        "the Authorization header is not 'Bearer <token>'",
        headers=_bearer("invalid_request", "the Authorization header is not 'Bearer <token>'"),
    )


def token_invalid() -> OperationOutcomeError:
    """Unknown (forged), revoked, or belonging to a disabled client or inactive account."""
    return auth_error(
        401,
        "login",
        "OAUTH-TOKEN-INVALID",
        "访问令牌无效或已撤销",
        "the access token is invalid or revoked",
        headers=_bearer("invalid_token", "the access token is invalid or revoked"),
    )


def token_expired() -> OperationOutcomeError:
    return auth_error(
        401,
        "expired",
        "OAUTH-TOKEN-EXPIRED",
        "访问令牌已过期",
        "the access token has expired",
        headers=_bearer("invalid_token", "the access token has expired"),
    )


def insufficient_scope(needed: str) -> OperationOutcomeError:
    """For the access-control layer: the token is good but its scopes do not cover this."""
    return auth_error(
        403,
        "forbidden",
        "OAUTH-INSUFFICIENT-SCOPE",
        f"访问令牌的授权范围不包括此操作（需要 {needed}）",
        f"the token's scopes do not cover this request (needs {needed})",
        headers=_bearer("insufficient_scope", f"needs {needed}"),
    )


# --- client registration -------------------------------------------------------------------


def client_invalid(field: str, zh: str, en: str) -> OperationOutcomeError:
    return auth_error(400, "invalid", "OAUTH-CLIENT-INVALID", zh, en, field)


def client_scope_invalid(detail: str) -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "OAUTH-CLIENT-SCOPE-INVALID",
        f"客户端授权范围无效：{detail}",
        f"invalid client scope: {detail}",
        "scope",
    )


def client_not_found() -> OperationOutcomeError:
    return auth_error(
        404, "not-found", "OAUTH-CLIENT-NOT-FOUND", "客户端不存在", "no such OAuth client"
    )


# --- session and web flow --------------------------------------------------------------------


def session_required() -> OperationOutcomeError:
    return auth_error(401, "login", "AUTH-SESSION-REQUIRED", "请先登录", "log in first")


def csrf_invalid() -> OperationOutcomeError:
    return auth_error(
        403,
        "security",
        "AUTH-CSRF-INVALID",
        "页面已过期或请求来源不可信，请刷新后重试",
        "the form expired or the request did not come from this site; reload and retry",
    )


def ticket_invalid() -> OperationOutcomeError:
    return auth_error(
        401,
        "login",
        "AUTH-LOGIN-TICKET-INVALID",
        "登录步骤已过期，请重新输入用户名和密码",
        "the login step expired; start again with login name and password",
        "ticket",
    )


def request_invalid(detail: str, expression: str | None = None) -> OperationOutcomeError:
    return auth_error(
        400,
        "invalid",
        "AUTH-REQUEST-INVALID",
        f"请求无效：{detail}",
        f"invalid request: {detail}",
        expression,
    )
