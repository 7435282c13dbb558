"""Tables of the OAuth2 / SMART authorization server: registered clients, authorization codes
and issued tokens.

No secret is stored in a form that can be used: client secrets, codes, access and refresh tokens
are random (256 bits) and kept only as their SM3 hash, so a copy of these tables lets nobody in.
Instants are milliseconds since the epoch, UTC, as in the store. On the shared
``carenet.store.schema.metadata`` so that Alembic sees them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from carenet.store.schema import metadata

_ID = String(64)
_HASH = String(64)  # SM3 hex
_REF = String(140)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", _ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # confidential | public
    Column("secret_hash", _HASH, nullable=True),  # None for public clients
    Column("scope", Text, nullable=False),  # the most this client may ever be granted
    Column("grant_types", Text, nullable=False),  # space-separated
    Column("redirect_uris", Text, nullable=False),  # newline-separated, exact match
    # The system account a backend client acts as (accounts.kind = system), if any.
    Column("account_id", String(36), nullable=True),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", _HASH, primary_key=True),
    Column("client_id", _ID, nullable=False),
    Column("account_id", String(36), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("launch_patient", _REF, nullable=True),  # "Patient/<id>" for patient/* scopes
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),  # S256
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    # Set at first exchange; a second exchange is a replay and revokes what the first issued.
    Column("used_at", BigInteger, nullable=True),
)

oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("access_hash", _HASH, nullable=False, unique=True),
    Column("refresh_hash", _HASH, nullable=True, unique=True),
    Column("client_id", _ID, nullable=False),
    Column("account_id", String(36), nullable=True),
    Column("scope", Text, nullable=False),
    Column("launch_patient", _REF, nullable=True),
    Column("grant_type", String(32), nullable=False),
    # The code this token family came from (to revoke on code replay, RFC 6749 §4.1.2).
    Column("code_hash", _HASH, nullable=True),
    # Every token refreshed from the same original grant shares its family (to revoke all of it
    # when a rotated refresh token is presented again: OAuth 2.0 Security BCP §4.14.2).
    Column("family_id", String(36), nullable=False),
    Column("issued_at", BigInteger, nullable=False),
    Column("access_expires", BigInteger, nullable=False),
    Column("refresh_expires", BigInteger, nullable=True),
    Column("refreshed_at", BigInteger, nullable=True),  # the refresh token was rotated
    Column("revoked_at", BigInteger, nullable=True),
)
Index("ix_oauth_tokens_family", oauth_tokens.c.family_id)
Index("ix_oauth_tokens_code", oauth_tokens.c.code_hash)
Index("ix_oauth_tokens_account", oauth_tokens.c.account_id)

OAUTH_TABLES: tuple[Table, ...] = (oauth_clients, oauth_codes, oauth_tokens)
