"""Helpers for the audit tests: an event factory with random identifiers, filling chains,
reading a chain back."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, select

from carenet.audit import AuditRecord, append, audit_events

CHAINS = 8


def make_event(**kw: Any) -> AuditRecord:
    base: dict[str, Any] = {
        "subtype": "read",
        "agent": f"Practitioner/{uuid.uuid4()}",
        "agent_role": "doctor",
        "patient": f"Patient/{uuid.uuid4()}",
        "entities": (f"Observation/{uuid.uuid4()}",),
        "source_address": "198.51.100.4",
        "request_id": uuid.uuid4().hex,
    }
    base.update(kw)
    return AuditRecord(**base)


def fill(engine: Engine, count: int, *, chains: int = CHAINS, **kw: Any) -> list[AuditRecord]:
    """Append ``count`` events, each in its own committed transaction, over every chain in
    turn (one thread's appends would otherwise all go to its own chain on PostgreSQL)."""
    events = [make_event(**kw) for _ in range(count)]
    with engine.connect() as conn:
        for i, e in enumerate(events):
            with conn.begin():
                append(conn, e, chains=chains, chain=i % chains)
    return events


def chain_rows(engine: Engine, chain_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_events)
            .where(audit_events.c.chain_id == chain_id)
            .order_by(audit_events.c.seq)
        ).mappings()
        return [dict(r) for r in rows]
