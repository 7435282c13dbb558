"""Persistence: engine, schema, repository (CRUD, versions, history), search, unit of work."""
