"""The AuditEvent hash chain: append, verify, query (issue 3; RULES.md ONL-8, ONL-10)."""

from carenet.audit.chain import DEFAULT_CHAINS, append, append_many, chain_for, ensure_chains
from carenet.audit.fhir import audit_event_id, parse_audit_event_id, to_fhir
from carenet.audit.queries import count, query, read_event
from carenet.audit.record import AuditRecord
from carenet.audit.schema import AUDIT_TABLES, audit_chain_heads, audit_events
from carenet.audit.verification import Problem, Tampering, VerifyReport, verify

__all__ = [
    "AUDIT_TABLES",
    "DEFAULT_CHAINS",
    "AuditRecord",
    "Problem",
    "Tampering",
    "VerifyReport",
    "append",
    "append_many",
    "audit_chain_heads",
    "audit_event_id",
    "audit_events",
    "chain_for",
    "count",
    "ensure_chains",
    "parse_audit_event_id",
    "query",
    "read_event",
    "to_fhir",
    "verify",
]
