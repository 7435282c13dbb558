"""OAuth2 clients: registration (``carenet client create``) and the client model the
authorization server checks (authlib's ClientMixin).

Confidential clients (backend services, server-side apps) authenticate with a secret; public
clients (browser and mobile apps) have none and must use PKCE. A client's ``scope`` is the most
it may ever be granted; each request may ask for that or less. Secrets are 256-bit random values
kept only as their SM3 hash: a slow password hash adds nothing to a value nobody can guess.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import Connection, insert, select, update

from carenet.access import oauth_errors
from carenet.access.oauth_schema import oauth_clients
from carenet.access.ports import Clock, now_ms
from carenet.access.scopes import Scope, ScopeError, all_covered, parse_scopes
from carenet.crypto.hashing import sm3_hex

ClientKind = Literal["confidential", "public"]
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def secret_hash(value: str) -> str:
    """SM3 of a high-entropy secret (client secret, code, token), domain-separated."""
    return sm3_hex(b"carenet/v1/oauth-secret\x00" + value.encode("utf-8"))


@dataclass(frozen=True)
class OAuthClient(ClientMixin):
    client_id: str
    name: str
    kind: ClientKind
    secret_hash: str | None
    scope: str
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    account_id: str | None
    status: str

    @property
    def is_public(self) -> bool:
        return self.kind == "public"

    @property
    def allowed_scopes(self) -> list[Scope]:
        return parse_scopes(self.scope)

    # --- authlib ClientMixin -----------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only when exactly one is registered; with several the request must name one.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope if the client may have it (None refuses: invalid_scope); an
        empty request means everything the client is registered for."""
        if not scope:
            return self.scope
        try:
            requested = parse_scopes(scope)
        except ScopeError:
            return None
        if not requested or not all_covered(self.allowed_scopes, requested):
            return None
        return " ".join(s.text for s in requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string match (OAuth 2.0 Security BCP §4.1.3): no prefix or pattern matching.
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.status != "active":
            return False
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _client(row: Any) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id,
        name=row.name,
        kind=row.kind,
        secret_hash=row.secret_hash,
        scope=row.scope,
        grant_types=tuple(row.grant_types.split()),
        redirect_uris=tuple(u for u in row.redirect_uris.split("\n") if u),
        account_id=row.account_id,
        status=row.status,
    )


def find_client(conn: Connection, client_id: str) -> OAuthClient | None:
    if not client_id or len(client_id) > 64:
        return None
    row = conn.execute(select(oauth_clients).where(oauth_clients.c.client_id == client_id)).first()
    return None if row is None else _client(row)


def get_client(conn: Connection, client_id: str) -> OAuthClient:
    client = find_client(conn, client_id)
    if client is None:
        raise oauth_errors.client_not_found()
    return client


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    ok = bool(parts.scheme) and not parts.fragment and len(uri) <= 2000
    if parts.scheme in ("http", "https"):
        ok = ok and bool(parts.hostname)
        # Plain http only to the device itself (native apps' loopback redirect, RFC 8252 §7.3).
        ok = ok and (parts.scheme == "https" or (parts.hostname or "") in _LOOPBACK)
    elif ok:
        # A private-use scheme of a native app (RFC 8252 §7.1), e.g. org.example.app:/cb.
        ok = "." in parts.scheme
    if not ok:
        raise oauth_errors.client_invalid(
            "redirect_uris",
            f"回调地址 {uri!r} 无效：须为 https、本机 http 或应用私有协议，且不含 #",
            f"redirect URI {uri!r} must be https, loopback http or a private-use scheme, "
            "without a fragment",
        )


def create_client(
    conn: Connection,
    *,
    name: str,
    scopes: str,
    kind: ClientKind = "confidential",
    redirect_uris: Sequence[str] = (),
    grant_types: Iterable[str] | None = None,
    account_id: str | None = None,
    clock: Clock = now_ms,
) -> tuple[str, str | None]:
    """Register a client; returns ``(client_id, client_secret)`` — the secret (None for public
    clients) is shown once and never stored.

    Default grant types: a confidential client without redirect URIs is a backend service
    (``client_credentials``); otherwise ``authorization_code`` + ``refresh_token``. A
    client_credentials client may hold only ``system/`` scopes; ``system/`` scopes are only for
    client_credentials. Errors: OAUTH-CLIENT-INVALID, OAUTH-CLIENT-SCOPE-INVALID (400).
    """
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise oauth_errors.client_invalid(
            "name", "客户端名称应为1至200个字符", "a client name has 1 to 200 characters"
        )
    if kind not in ("confidential", "public"):
        raise oauth_errors.client_invalid(
            "kind", "客户端类型应为 confidential 或 public", "kind is confidential or public"
        )
    uris = tuple(dict.fromkeys(u.strip() for u in redirect_uris if u.strip()))
    for uri in uris:
        _check_redirect_uri(uri)
    grants: tuple[str, ...]
    if grant_types is None:
        grants = (
            ("client_credentials",)
            if kind == "confidential" and not uris
            else ("authorization_code", "refresh_token")
        )
    else:
        grants = tuple(dict.fromkeys(grant_types))
    if not grants or any(g not in GRANT_TYPES for g in grants):
        raise oauth_errors.client_invalid(
            "grant_types",
            f"授权类型应为 {', '.join(GRANT_TYPES)}",
            f"grant types are {', '.join(GRANT_TYPES)}",
        )
    if kind == "public" and "client_credentials" in grants:
        raise oauth_errors.client_invalid(
            "grant_types",
            "公开客户端没有密钥，不能使用 client_credentials",
            "a public client has no secret and cannot use client_credentials",
        )
    if "authorization_code" in grants and not uris:
        raise oauth_errors.client_invalid(
            "redirect_uris",
            "authorization_code 客户端须登记至少一个回调地址",
            "an authorization_code client needs at least one redirect URI",
        )
    try:
        parsed = parse_scopes(scopes)
    except ScopeError as exc:
        raise oauth_errors.client_scope_invalid(str(exc)) from exc
    if not parsed:
        raise oauth_errors.client_scope_invalid("no scope given")
    system = [s for s in parsed if s.context == "system"]
    if "client_credentials" in grants and len(system) != len(parsed):
        raise oauth_errors.client_scope_invalid(
            "a client_credentials client holds only system/ scopes"
        )
    if system and "client_credentials" not in grants:
        raise oauth_errors.client_scope_invalid(
            "system/ scopes are only for client_credentials clients"
        )
    client_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32) if kind == "confidential" else None
    now = clock()
    conn.execute(
        insert(oauth_clients).values(
            client_id=client_id,
            name=name,
            kind=kind,
            secret_hash=secret_hash(secret) if secret else None,
            scope=" ".join(s.text for s in parsed),
            grant_types=" ".join(grants),
            redirect_uris="\n".join(uris),
            account_id=account_id,
            status="active",
            created=now,
            updated=now,
        )
    )
    return client_id, secret


def set_client_status(
    conn: Connection,
    client_id: str,
    status: Literal["active", "disabled"],
    *,
    clock: Clock = now_ms,
) -> None:
    """Disable (or re-enable) a client: its tokens stop working at the next request, since every
    token check reads the client's status."""
    get_client(conn, client_id)
    conn.execute(
        update(oauth_clients)
        .where(oauth_clients.c.client_id == client_id)
        .values(status=status, updated=clock())
    )
