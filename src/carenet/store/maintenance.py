"""Database upkeep the server relies on: fresh planner statistics after bulk loads."""

from __future__ import annotations

from sqlalchemy import Engine, text


def analyze(engine: Engine) -> None:
    """Refresh planner statistics (PostgreSQL ANALYZE; SQLite ANALYZE into sqlite_stat1).

    Search plans depend on them: without statistics PostgreSQL can pick plans that scan whole
    index tables. Autovacuum does this eventually on a normally configured server; bulk loads
    call it at once.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
