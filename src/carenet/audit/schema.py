"""The audit tables: ``audit_events`` (hash-chained events) and ``audit_chain_heads``.

They are defined on the shared ``carenet.store.schema.metadata`` so that Alembic autogenerate
sees them beside the resource tables. Free text that a client can influence (agent, query,
addresses, request ids) is ``Text``: a length limit would make an odd request fail its own
transaction, and an audit record must never be truncated (its hash covers every character).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

from carenet.store.schema import metadata

# One row per audited action. (chain_id, seq) is the key: seq runs 1, 2, 3 ... without gaps in
# each chain, and prev_hash/hash link every event to the one before it (see chain.py).
audit_events = Table(
    "audit_events",
    metadata,
    Column("chain_id", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    # Milliseconds since the Unix epoch, UTC, like resources.last_updated.
    Column("recorded", BigInteger, nullable=False),
    Column("action", String(1), nullable=False),  # AuditEvent.action: C R U D E
    Column("subtype", String(32), nullable=False),  # read, search, login, break-glass ...
    Column("outcome", SmallInteger, nullable=False),  # AuditEvent.outcome: 0 4 8 12
    Column("agent", Text, nullable=False),  # "Practitioner/123", "Device/x", "anonymous"
    Column("agent_role", Text, nullable=True),
    Column("on_behalf_of", Text, nullable=True),
    Column("patient", Text, nullable=True),  # the patient concerned: "who looked at my record"
    Column("entities", Text, nullable=False),  # JSON list of resource references
    Column("query", Text, nullable=True),  # the search query string as received
    Column("source_address", Text, nullable=True),  # the client's network address
    Column("request_id", Text, nullable=True),
    Column("purpose", Text, nullable=True),  # the stated reason (break-glass)
    Column("detail", Text, nullable=True),  # JSON object: operation name, status, error code
    Column("prev_hash", String(64), nullable=False),  # hex SM3
    Column("hash", String(64), nullable=False),  # hex SM3
    PrimaryKeyConstraint("chain_id", "seq", name="pk_audit_events"),
)
# The regulator's and the patient's questions: by patient, by agent, by time, action, outcome;
# each newest first.
Index("ix_audit_events_patient_recorded", audit_events.c.patient, audit_events.c.recorded)
Index("ix_audit_events_agent_recorded", audit_events.c.agent, audit_events.c.recorded)
Index("ix_audit_events_recorded", audit_events.c.recorded)
Index("ix_audit_events_action_recorded", audit_events.c.action, audit_events.c.recorded)
Index("ix_audit_events_outcome_recorded", audit_events.c.outcome, audit_events.c.recorded)

# The last event of each chain. Appending locks this row (SELECT ... FOR UPDATE), so it is also
# what serialises writers of one chain; verification compares it with the last event to detect
# events cut off the end.
audit_chain_heads = Table(
    "audit_chain_heads",
    metadata,
    Column("chain_id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

AUDIT_TABLES = [audit_events, audit_chain_heads]
