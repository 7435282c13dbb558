"""Fixtures for the audit chain on both stores: an engine with only the audit tables, and an
event factory with random identifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.audit.helpers import make_event

from carenet.audit import AUDIT_TABLES, AuditRecord
from carenet.store.engine import build_engine
from carenet.store.schema import metadata


@contextmanager
def audit_engine(url: str) -> Iterator[Engine]:
    eng = build_engine(url)
    metadata.create_all(eng, tables=AUDIT_TABLES)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    with audit_engine(db_url) as eng:
        yield eng


@pytest.fixture
def pg_engine(pg_server: str) -> Iterator[Engine]:
    """PostgreSQL only: for what the two stores do differently."""
    url, name = create_pg_database(pg_server)
    try:
        with audit_engine(url) as eng:
            yield eng
    finally:
        drop_pg_database(pg_server, name)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """SQLite only: for what the two stores do differently."""
    with audit_engine(f"sqlite:///{tmp_path / 'audit.db'}") as eng:
        yield eng


@pytest.fixture
def event() -> Callable[..., AuditRecord]:
    return make_event
