"""Identities, login, OAuth2/SMART tokens, roles, consent and the per-actor repository (issue 3)."""
