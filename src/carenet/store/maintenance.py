"""Database upkeep the server relies on: fresh planner statistics after bulk loads, and sealing
resident IDs and phone numbers that were stored before protection existed."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, and_, select, text, tuple_, update

from carenet.store import indexer
from carenet.store.protection import ResourceProtection
from carenet.store.schema import resource_history, resources


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


@dataclass(frozen=True)
class SealReport:
    current: int  # rows of ``resources`` sealed (and re-indexed)
    history: int  # rows of ``resource_history`` sealed


def seal_plaintext(
    engine: Engine, protection: ResourceProtection, *, tz: str, batch: int = 500
) -> SealReport:
    """Seal the resident IDs and phone numbers of every stored version written in clear (before
    this node protected them), and re-index those current versions with blind indexes.

    Safe to run while the node serves: each batch is its own transaction, a current version
    changed meanwhile is left to the writer (which sealed it), and a second run finds nothing
    to do. Versions keep their number and lastUpdated: only the stored form changes.
    """
    current = history = 0
    for table in (resources, resource_history):
        last: tuple[str, str, int] | None = None
        while True:
            with engine.begin() as conn:
                key = tuple_(table.c.res_type, table.c.res_id, table.c.version)
                q = select(table.c.res_type, table.c.res_id, table.c.version, table.c.content)
                if last is not None:
                    q = q.where(key > tuple_(*last))
                rows = conn.execute(
                    q.order_by(table.c.res_type, table.c.res_id, table.c.version).limit(batch)
                ).all()
                if not rows:
                    break
                last = (rows[-1].res_type, rows[-1].res_id, rows[-1].version)
                for row in rows:
                    if not row.content or not protection.has_plaintext(row.content):
                        continue
                    resource = protection.reveal(row.content)
                    sealed = protection.seal(orjson.dumps(resource).decode())
                    done = conn.execute(
                        update(table)
                        .where(
                            and_(
                                table.c.res_type == row.res_type,
                                table.c.res_id == row.res_id,
                                table.c.version == row.version,
                            )
                        )
                        .values(content=sealed)
                    ).rowcount
                    if done != 1:
                        continue
                    if table is resources:
                        current += 1
                        indexer.delete_rows(conn, [(row.res_type, row.res_id)])
                        indexer.write_rows(
                            conn, indexer.rows_for(resource, tz=tz, blind=protection.index_code)
                        )
                    else:
                        history += 1
    return SealReport(current, history)
