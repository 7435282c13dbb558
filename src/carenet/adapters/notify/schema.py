"""Tables of the notification outbox and of the sandbox provider's delivered messages."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from carenet.store.schema import metadata

# Messages to send, written in the caller's transaction (DESIGN.md principle 2); a relay
# delivers them after commit. Recipient and parameters are encrypted: a parameter may be a
# one-time code, and the recipient a phone number.
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("channel", String(16), nullable=False),  # sms
    Column("to_index", String(128), nullable=False),
    Column("to_enc", Text, nullable=False),
    Column("template", String(64), nullable=False),
    Column("params_enc", Text, nullable=False),
    Column("status", String(8), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
    Column("provider_message_id", String(128), nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_notify_outbox_status_created", notify_outbox.c.status, notify_outbox.c.created)

# The sandbox provider's "handsets": what it delivered, in clear, for tests and the demo. It
# exists only where the sandbox provider is configured, never with a real SMS gateway.
notify_sandbox_messages = Table(
    "notify_sandbox_messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("outbox_id", String(36), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("params", Text, nullable=False),  # JSON
    Column("body", Text, nullable=False),
    Column("delivered_at", BigInteger, nullable=False),
)
Index(
    "ix_notify_sandbox_recipient",
    notify_sandbox_messages.c.recipient,
    notify_sandbox_messages.c.delivered_at,
)

NOTIFY_TABLES = (notify_outbox, notify_sandbox_messages)
