"""Test helpers for the search tests: a store that writes resources with their index rows
directly (no repository, no validation) and runs searches, on each database."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert
from tests.conftest import create_pg_database, drop_pg_database

from carenet.store import indexer, schema
from carenet.store.engine import build_engine
from carenet.store.search import SearchResult, search


class Store:
    """Writes resources with their index rows and runs searches, each in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, resource: dict[str, Any], *, last_updated: int | None = None) -> str:
        resource.setdefault("id", str(uuid.uuid4()))
        with self.engine.begin() as conn:
            conn.execute(
                insert(schema.resources),
                [
                    {
                        "res_type": resource["resourceType"],
                        "res_id": resource["id"],
                        "version": 1,
                        "last_updated": last_updated or int(time.time() * 1000),
                        "deleted": False,
                        "content": orjson.dumps(resource).decode(),
                    }
                ],
            )
            indexer.write_rows(conn, indexer.rows_for(resource))
        return str(resource["id"])

    def search(self, rtype: str | None, params: list[tuple[str, str]], **kw: Any) -> SearchResult:
        with self.engine.begin() as conn:
            return search(conn, rtype, params, **kw)

    def ids(self, rtype: str | None, params: list[tuple[str, str]], **kw: Any) -> list[str]:
        return [r["id"] for r in self.search(rtype, params, **kw).matches]

    def idset(self, rtype: str | None, params: list[tuple[str, str]], **kw: Any) -> set[str]:
        return set(self.ids(rtype, [*params, ("_count", "1000")], **kw))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine as build_engine makes it, on a new database of each kind with CareNet's tables."""
    engine = build_engine(db_url)
    schema.metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A new PostgreSQL database (prepared statements, plan reuse and the direct statement
    path are PostgreSQL's)."""
    url, name = create_pg_database(pg_server)
    try:
        yield url
    finally:
        drop_pg_database(pg_server, name)
