"""The OAuth2 / SMART authorization server: authlib's framework-agnostic core bound to one
database connection (one request, one transaction).

Grants: authorization code with PKCE (S256 only, required of every client, SMART App Launch 2.0
§2.0.6), client credentials for backend services, refresh tokens with rotation. Endpoints:
revocation (RFC 7009) and introspection (RFC 7662). Codes and tokens are stored by hash
(``oauth_schema``). authlib checks the protocol; we supply storage, scope rules and the SMART
launch context.

A refusal normally changes nothing (the caller rolls back). Two refusals change state on
purpose and set ``commit_on_error``: a replayed authorization code revokes every token it gave
(RFC 6749 §4.1.2), and a rotated refresh token presented again revokes its whole family (OAuth 2.0
Security BCP §4.14.2) — both are signs that a code or token was stolen.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    AuthorizationServer,
    OAuth2Error,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy import Connection, insert, select, update

from carenet.access.accounts import Account, _account
from carenet.access.clients import OAuthClient, find_client, secret_hash
from carenet.access.oauth_errors import OAUTH_CODES
from carenet.access.oauth_schema import oauth_codes
from carenet.access.oauth_tokens import (
    OAuthPolicy,
    TokenRecord,
    find_token,
    mark_refreshed,
    new_token,
    revoke_code_tokens,
    revoke_family,
    revoke_token,
    store_token,
)
from carenet.access.ports import Clock
from carenet.access.schema import accounts
from carenet.access.scopes import ScopeError, parse_scopes

log = logging.getLogger(__name__)

#: Scopes that make a refresh token worth issuing (SMART 2.0 §3.0.4).
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
#: System accounts whose clients may introspect any token (other CareNet nodes).
INTROSPECTING_ROLES = frozenset({"node"})


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class CarenetOAuth2Request(OAuth2Request):
    """An OAuth2Request built from already-read query and form pairs.

    authlib's constructor refuses non-https URIs; TLS is terminated in front of CareNet (and
    tests run over plain http), so the transport check is not ours to make here.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        args: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self._args = dict(reversed(args))  # first value wins
        self._form = dict(reversed(form))
        self.payload = _Payload(args + form)
        self.client: Any = None
        self.auth_method: str | None = None
        self.user: Any = None
        self.authorization_code: Any = None
        self.refresh_token: Any = None
        self.credential: Any = None
        self._scope: str | None = None
        #: "Patient/<id>" chosen at the consent step for patient/* scopes.
        self.launch_patient: str | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass(frozen=True)
class CodeRecord(AuthorizationCodeMixin):
    code_hash: str
    client_id: str
    account_id: str
    redirect_uri: str
    scope: str
    launch_patient: str | None
    code_challenge: str
    code_challenge_method: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


def _active_account(conn: Connection, account_id: str | None) -> Account | None:
    if account_id is None:
        return None
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
    if row is None or row.status != "active":
        return None
    return _account(row)


class CarenetAuthorizationServer(AuthorizationServer):
    """authlib's AuthorizationServer over one Connection; create one per request."""

    def __init__(
        self, conn: Connection, policy: OAuthPolicy, clock: Clock, *, issuer: str, fhir_base: str
    ) -> None:
        super().__init__(scopes_supported=None)
        self.conn = conn
        self.policy = policy
        self.now = clock()
        self.issuer = issuer
        self.fhir_base = fhir_base
        self.commit_on_error = False
        self.register_token_generator("default", self._generate_token)
        self.register_grant(AuthorizationCodeGrant, [SmartAuthorizeChecks(), S256Challenge()])
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(RefreshTokenGrant)
        self.register_endpoint(CarenetRevocationEndpoint)
        self.register_endpoint(CarenetIntrospectionEndpoint)

    # --- storage hooks -----------------------------------------------------------------------

    def query_client(self, client_id: str) -> OAuthClient | None:
        client = find_client(self.conn, client_id)
        return client if client is not None and client.status == "active" else None

    def _generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: Account | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        scope = scope or ""
        body: dict[str, Any] = {
            "access_token": new_token(),
            "token_type": "Bearer",
            "expires_in": self.policy.access_token_ttl_seconds,
            "scope": scope,
        }
        if include_refresh_token and REFRESH_SCOPES & set(scope.split()):
            body["refresh_token"] = new_token()
        return body

    def save_token(self, token: dict[str, Any], request: CarenetOAuth2Request) -> None:
        client: OAuthClient = request.client
        user: Account | None = request.user
        code: CodeRecord | None = request.authorization_code
        previous: TokenRecord | None = request.refresh_token
        grant_type = request.payload.grant_type or ""
        store_token(
            self.conn,
            self.policy,
            self.now,
            token,
            client_id=client.client_id,
            account_id=user.id if user is not None else client.account_id,
            grant_type=grant_type,
            launch_patient=(
                code.launch_patient if code else previous.launch_patient if previous else None
            ),
            code_hash=code.code_hash if code else previous.code_hash if previous else None,
            family_id=previous.family_id if previous else None,
        )

    def validate_requested_scope(self, scope: str | None) -> None:
        try:
            parse_scopes(scope)
        except ScopeError as exc:
            raise InvalidScopeError(_ascii(str(exc))) from exc

    # --- framework glue ----------------------------------------------------------------------

    def create_oauth2_request(self, request: CarenetOAuth2Request) -> CarenetOAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[Any]]:
        return status, body, list(headers or [])

    def handle_error_response(self, request: Any, error: OAuth2Error) -> tuple[int, Any, list[Any]]:
        status, body, headers = error(self.get_error_uri(request, error))
        if isinstance(body, dict):
            body = {**body, "code": OAUTH_CODES.get(body.get("error", ""), "OAUTH-ERROR")}
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("oauth signal %s", name)


def _ascii(text: str) -> str:
    # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:300]


class SmartAuthorizeChecks:
    """SMART checks of an authorization request, after authlib has validated client, redirect
    URI and scope (so errors go back to the app's redirect URI)."""

    def __call__(self, grant: AuthorizationCodeGrant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.check)

    def check(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        request = grant.request
        aud = request.payload.data.get("aud")
        # SMART 2.0 §2.0.6: aud names the FHIR server the token is for, so that a token meant
        # for one server is never sent to a malicious one.
        if aud is None:
            raise InvalidRequestError("Missing 'aud' (the FHIR base URL).")
        if aud.rstrip("/") != grant.server.fhir_base.rstrip("/"):
            raise InvalidRequestError("'aud' is not this server's FHIR base URL.")
        scopes = parse_scopes(request.scope)
        if any(s.context == "system" for s in scopes):
            raise InvalidScopeError("system/ scopes are only granted to client_credentials.")


class S256Challenge(CodeChallenge):
    """PKCE with S256 only, required of every client (SMART App Launch 2.0 requires it of all
    apps; ``plain`` offers nothing against an intercepted authorization request)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE S256 is required).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    server: CarenetAuthorizationServer

    def save_authorization_code(self, code: str, request: CarenetOAuth2Request) -> None:
        now = self.server.now
        self.server.conn.execute(
            insert(oauth_codes).values(
                code_hash=secret_hash(code),
                client_id=request.client.client_id,
                account_id=request.user.id,
                # Empty when the request named none: then the token request need not either.
                redirect_uri=request.payload.redirect_uri or "",
                scope=request.scope or "",
                launch_patient=request.launch_patient,
                code_challenge=request.payload.data["code_challenge"],
                code_challenge_method=request.payload.data.get("code_challenge_method", "S256"),
                created=now,
                expires=now + self.server.policy.code_ttl_seconds * 1000,
            )
        )

    def query_authorization_code(self, code: str, client: OAuthClient) -> CodeRecord | None:
        conn, now = self.server.conn, self.server.now
        digest = secret_hash(code)
        row = conn.execute(
            select(oauth_codes).where(
                oauth_codes.c.code_hash == digest, oauth_codes.c.client_id == client.client_id
            )
        ).first()
        if row is None:
            return None
        if row.used_at is not None:
            revoked = revoke_code_tokens(conn, digest, now)
            log.warning("authorization code replayed", extra={"revoked_tokens": revoked})
            self.server.commit_on_error = True
            return None
        if now >= row.expires:
            return None
        return CodeRecord(
            code_hash=row.code_hash,
            client_id=row.client_id,
            account_id=row.account_id,
            redirect_uri=row.redirect_uri,
            scope=row.scope,
            launch_patient=row.launch_patient,
            code_challenge=row.code_challenge,
            code_challenge_method=row.code_challenge_method,
        )

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        # Kept, marked used, so that a replay is recognised. The conditional update settles a
        # race between two exchanges of one code: only one of them marks it.
        used = self.server.conn.execute(
            update(oauth_codes)
            .where(
                oauth_codes.c.code_hash == authorization_code.code_hash,
                oauth_codes.c.used_at.is_(None),
            )
            .values(used_at=self.server.now)
        ).rowcount
        if used != 1:
            raise InvalidGrantError("Invalid 'code' in request.")

    def authenticate_user(self, authorization_code: CodeRecord) -> Account | None:
        return _active_account(self.server.conn, authorization_code.account_id)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: CarenetAuthorizationServer

    def validate_requested_scope(self) -> None:
        scope = self.request.payload.scope
        self.server.validate_requested_scope(scope)
        allowed = self.request.client.get_allowed_scope(scope)
        if allowed is None:
            raise InvalidScopeError("The requested scope is not allowed for this client.")
        self.request.scope = allowed

    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        client: OAuthClient = self.request.client
        if (
            client.account_id is not None
            and _active_account(self.server.conn, client.account_id) is None
        ):
            raise InvalidGrantError("The client's system account is not active.")
        token = self.generate_token(scope=self.request.scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh gives a new refresh token
    server: CarenetAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        conn, now = self.server.conn, self.server.now
        record = find_token(conn, refresh_token, now, "refresh_token")
        if record is None or record.matched != "refresh_token":
            return None
        if record.refreshed_at is not None:
            revoked = revoke_family(conn, record.family_id, now)
            log.warning("rotated refresh token presented again", extra={"revoked": revoked})
            self.server.commit_on_error = True
            return None
        if record.is_revoked() or record.is_expired():
            return None
        return record

    def authenticate_user(self, refresh_token: TokenRecord) -> Account | None:
        return _active_account(self.server.conn, refresh_token.account_id)

    def revoke_old_credential(self, refresh_token: TokenRecord) -> None:
        if not mark_refreshed(self.server.conn, refresh_token.id, self.server.now):
            raise InvalidGrantError("The refresh token was used concurrently.")


class _TokenQuery:
    server: CarenetAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return find_token(self.server.conn, token_string, self.server.now, token_type_hint)


class CarenetRevocationEndpoint(_TokenQuery, RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def revoke_token(self, token: TokenRecord, request: Any) -> None:
        # RFC 7009 §2.1: revoking a refresh token also ends the access tokens of the same grant.
        if token.matched == "refresh_token":
            revoke_family(self.server.conn, token.family_id, self.server.now)
        else:
            revoke_token(self.server.conn, token.id, self.server.now)


class CarenetIntrospectionEndpoint(_TokenQuery, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def check_permission(self, token: TokenRecord, client: OAuthClient, request: Any) -> bool:
        """A client may introspect its own tokens; another CareNet node (a client of a system
        account with role ``node``) any token — that is how resource servers check them."""
        if token.client_id == client.client_id:
            return True
        owner = _active_account(self.server.conn, client.account_id)
        return owner is not None and owner.role in INTROSPECTING_ROLES

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        conn = self.server.conn
        client = find_client(conn, token.client_id)
        account = _active_account(conn, token.account_id)
        if (
            client is None
            or client.status != "active"
            or (token.account_id is not None and account is None)
        ):
            return {"active": False}
        expires = token.access_expires if token.matched == "access_token" else token.refresh_expires
        body: dict[str, Any] = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "token_type": "Bearer" if token.matched == "access_token" else "refresh_token",
            "exp": (expires or 0) // 1000,
            "iat": token.issued_at // 1000,
            "iss": self.server.issuer,
            "aud": self.server.fhir_base,
            "sub": token.account_id or token.client_id,
        }
        if account is not None and account.fhir_ref:
            body["fhirUser"] = account.fhir_ref
        if token.launch_patient:
            body["patient"] = token.launch_patient.split("/", 1)[1]
        return body
