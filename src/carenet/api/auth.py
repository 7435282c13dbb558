"""HTTP face of identity and OAuth2/SMART: the authorization server's endpoints, the
server-rendered login and consent page of the authorization step, the JSON login API of the
portals, and the bearer-token dependency of the resource server.

Routes only translate HTTP: each runs one unit of work over the services in ``carenet.access``.
A login step that fails is committed first (its failure counts towards the lockout) and then
answered with its coded error. The page is bilingual (中文 / English) and posts back to itself
with a CSRF token; the session is a signed HttpOnly SameSite=Lax cookie (Secure over https).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Connection

from carenet.access import oauth_errors
from carenet.access.accounts import Account, AuthContext, get_account
from carenet.access.login import (
    LoginResult,
)
from carenet.access.oauth_server import CarenetAuthorizationServer, CarenetOAuth2Request
from carenet.access.oauth_tokens import (
    OAuthPolicy,
    Principal,
    parse_authorization_header,
    principal_for_token,
)
from carenet.access.sessions import CSRF, LOGIN_TICKET, SESSION, Signer
from carenet.config import Settings
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.uow import Store

log = logging.getLogger(__name__)

SESSION_COOKIE = "carenet_session"
CSRF_COOKIE = "carenet_csrf"
CSRF_HEADER = "x-csrf-token"
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """What the audit trail should record of an authentication step (appended by the hook in
    the same transaction as the step)."""

    action: str  # login | login-failed | logout | token | token-refused | authorize
    account_id: str | None
    client_id: str | None
    code: str | None  # the refusal's code, None on success
    source: str | None  # client address


AuthEventHook = Callable[[Connection, AuthEvent], None]


def oauth_policy_from_settings(settings: Settings) -> OAuthPolicy:
    """OAuthPolicy from the Settings fields ``oauth_*``, ``session_ttl_seconds`` and
    ``login_ticket_ttl_seconds``."""
    return OAuthPolicy(
        access_token_ttl_seconds=settings.oauth_access_token_ttl_seconds,
        refresh_token_ttl_seconds=settings.oauth_refresh_token_ttl_seconds,
        code_ttl_seconds=settings.oauth_code_ttl_seconds,
        session_ttl_seconds=settings.session_ttl_seconds,
        login_ticket_ttl_seconds=settings.login_ticket_ttl_seconds,
    )


def smart_configuration(settings: Settings) -> dict[str, Any]:
    """SMART App Launch 2.x discovery document: only what this server implements."""
    base = settings.base_url.rstrip("/")
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/auth/authorize",
        "token_endpoint": f"{base}/auth/token",
        "revocation_endpoint": f"{base}/auth/revoke",
        "introspection_endpoint": f"{base}/auth/introspect",
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "scopes_supported": [
            "launch/patient",
            "offline_access",
            "online_access",
            "patient/*.cruds",
            "patient/*.rs",
            "user/*.cruds",
            "user/*.rs",
            "system/*.cruds",
            "system/*.rs",
            "patient/*.read",
            "patient/*.write",
            "user/*.read",
            "user/*.write",
        ],
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "context-standalone-patient",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
        ],
    }


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def outcome_response(err: OperationOutcomeError) -> Response:
    return Response(
        orjson.dumps(err.to_outcome()),
        status_code=err.status,
        media_type="application/fhir+json",
        headers={"Cache-Control": "no-store", **(err.headers or {})},
    )


async def read_form(request: Request) -> list[tuple[str, str]]:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype != _FORM:
        raise oauth_errors.request_invalid(f"the body must be {_FORM}")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise oauth_errors.request_invalid("the form is too large")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise oauth_errors.request_invalid("the form is not UTF-8 form data") from exc


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise oauth_errors.request_invalid("the body is too large")
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise oauth_errors.request_invalid("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise oauth_errors.request_invalid("the body must be a JSON object")
    return data


def text_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise oauth_errors.request_invalid(f"{key} is required and must be a string", key)
    return value


def optional_field(data: dict[str, Any], key: str) -> str | None:
    return None if data.get(key) in (None, "") else text_field(data, key)


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "role": account.role,
        "fhirUser": account.fhir_ref,
        "realNameVerified": account.real_name_verified,
    }


class AuthService:
    """What the routes share: store, identity context, OAuth policy, cookie signer, audit hook."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ctx: AuthContext,
        policy: OAuthPolicy,
        on_event: AuthEventHook | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ctx = ctx
        self.policy = policy
        self.on_event = on_event
        self.signer = Signer.from_secret(settings.master_secret)
        # Secure cookies are not sent back over plain http, so they are Secure exactly when the
        # node is served over https (always, outside a developer's machine).
        self.secure_cookies = settings.base_url.lower().startswith("https://")

    def record(self, conn: Connection, request: Request, action: str, **kw: Any) -> None:
        if self.on_event is not None:
            self.on_event(
                conn,
                AuthEvent(
                    action=action,
                    account_id=kw.get("account_id"),
                    client_id=kw.get("client_id"),
                    code=kw.get("code"),
                    source=request.client.host if request.client else None,
                ),
            )

    def record_alone(self, request: Request, action: str, **kw: Any) -> None:
        """Record a refusal whose own work was rolled back, in a transaction of its own."""
        if self.on_event is not None:
            with self.store.unit_of_work() as uow:
                self.record(uow.repo.conn, request, action, **kw)
                uow.commit()

    # --- cookies -----------------------------------------------------------------------------

    def _set_cookie(self, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=self.policy.session_ttl_seconds,
            path="/",
            secure=self.secure_cookies,
            httponly=True,
            samesite="lax",
        )

    def csrf_secret(self, request: Request) -> str | None:
        claims = self.signer.unsign(CSRF, request.cookies.get(CSRF_COOKIE), now_ms=self.ctx.clock())
        value = claims.get("v") if claims else None
        return value if isinstance(value, str) else None

    def set_csrf(self, response: Response, secret: str) -> None:
        value = self.signer.sign(
            CSRF,
            {"v": secret},
            now_ms=self.ctx.clock(),
            ttl_seconds=self.policy.session_ttl_seconds,
        )
        self._set_cookie(response, CSRF_COOKIE, value)

    def check_csrf(self, request: Request, given: str | None) -> None:
        """Double submit: the form field or header must equal the secret in the signed cookie
        (which another site can neither read nor forge)."""
        secret = self.csrf_secret(request)
        if not secret or not given or not hmac.compare_digest(secret, given):
            raise oauth_errors.csrf_invalid()

    def session_account(self, conn: Connection, request: Request) -> Account | None:
        claims = self.signer.unsign(
            SESSION, request.cookies.get(SESSION_COOKIE), now_ms=self.ctx.clock()
        )
        if not claims or not isinstance(claims.get("sub"), str):
            return None
        try:
            account = get_account(conn, claims["sub"])
        except OperationOutcomeError:
            return None
        return account if account.status == "active" and account.kind == "person" else None

    def start_session(self, response: Response, account: Account, csrf: str) -> None:
        value = self.signer.sign(
            SESSION,
            {"sub": account.id},
            now_ms=self.ctx.clock(),
            ttl_seconds=self.policy.session_ttl_seconds,
        )
        self._set_cookie(response, SESSION_COOKIE, value)
        self.set_csrf(response, csrf)

    def ticket(self, account: Account, step: str) -> str:
        return self.signer.sign(
            LOGIN_TICKET,
            {"sub": account.id, "step": step},
            now_ms=self.ctx.clock(),
            ttl_seconds=self.policy.login_ticket_ttl_seconds,
        )

    def ticket_account(self, ticket: str | None, steps: tuple[str, ...]) -> str:
        claims = self.signer.unsign(LOGIN_TICKET, ticket, now_ms=self.ctx.clock())
        if not claims or claims.get("step") not in steps or not isinstance(claims.get("sub"), str):
            raise oauth_errors.ticket_invalid()
        return str(claims["sub"])

    # --- transactions ------------------------------------------------------------------------

    def login_step(
        self, request: Request, step: Callable[[Connection], LoginResult]
    ) -> LoginResult:
        """Run a login step, record it, COMMIT (a failure counts towards the lockout), and only
        then let the caller answer with the error."""
        with self.store.unit_of_work() as uow:
            result = step(uow.repo.conn)
            code = result.error.issues[0].details_code if result.error else None
            self.record(
                uow.repo.conn,
                request,
                "login" if result.ok else "login-failed",
                account_id=result.account.id if result.account else None,
                code=code,
            )
            uow.commit()
        return result

    def server(self, conn: Connection) -> CarenetAuthorizationServer:
        return CarenetAuthorizationServer(
            conn,
            self.policy,
            self.ctx.clock,
            issuer=self.settings.base_url.rstrip("/"),
            fhir_base=self.settings.fhir_base,
        )

    def endpoint(self, request: Request, form: list[tuple[str, str]], kind: str) -> Response:
        """Token, revocation or introspection: success commits; a refusal rolls back unless it
        revoked a stolen code's or refresh token's tokens on purpose (``commit_on_error``)."""
        with self.store.unit_of_work() as uow:
            server = self.server(uow.repo.conn)
            oreq = oauth_request(request, [], form)
            if kind == "token":
                status, body, headers = server.create_token_response(oreq)
            else:
                status, body, headers = server.create_endpoint_response(kind, oreq)
            ok = status < 400
            client_id = oreq.client.client_id if oreq.client is not None else None
            account_id = oreq.user.id if oreq.user is not None else None
            code = None if ok else body.get("code")
            if kind == "token" and (ok or server.commit_on_error):
                self.record(
                    uow.repo.conn,
                    request,
                    "token" if ok else "token-refused",
                    account_id=account_id,
                    client_id=client_id,
                    code=code,
                )
            if ok or server.commit_on_error:
                uow.commit()
        if kind == "token" and not ok and not server.commit_on_error:
            self.record_alone(request, "token-refused", client_id=client_id, code=code)
        return oauth_response(status, body, headers)


def oauth_request(
    request: Request, args: list[tuple[str, str]], form: list[tuple[str, str]]
) -> CarenetOAuth2Request:
    return CarenetOAuth2Request(request.method, str(request.url), request.headers, args, form)


def oauth_response(status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
    hdrs = dict(headers)
    if status in (301, 302, 303):
        return RedirectResponse(hdrs.pop("Location"), status_code=302, headers=hdrs)
    hdrs.pop("Content-Type", None)
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=hdrs
    )


def bearer_authenticator(store: Store, ctx: AuthContext) -> Callable[[Request], Principal | None]:
    """A FastAPI dependency for the resource server: the Principal of the request's bearer
    token; None when there is no Authorization header (the caller decides whether anonymous is
    allowed); a coded 401 (OAUTH-TOKEN-MALFORMED / -INVALID / -EXPIRED, with ``WWW-Authenticate:
    Bearer error="invalid_token"``) otherwise. Token, client and account are read afresh."""

    def authenticate(request: Request) -> Principal | None:
        token = parse_authorization_header(request.headers.get("authorization"))
        if token is None:
            return None
        with store.engine.connect() as conn:
            return principal_for_token(conn, token, ctx.clock())

    return authenticate


def bearer_principal(request: Request, conn: Connection, ctx: AuthContext) -> Principal | None:
    """What ``bearer_authenticator`` answers, read on a connection the caller has open: the
    FHIR API reads it in the request's own unit of work, saving a pool checkout, a ping and a
    rollback per request."""
    token = parse_authorization_header(request.headers.get("authorization"))
    if token is None:
        return None
    return principal_for_token(conn, token, ctx.clock())
