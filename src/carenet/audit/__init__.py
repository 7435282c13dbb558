"""The AuditEvent hash chain: append, verify, query (issue 3)."""
