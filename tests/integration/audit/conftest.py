"""Fixtures for the audit chain on both stores: an engine with only the audit tables, and an
event factory with random identifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from tests.integration.audit.helpers import make_event

from carenet.audit import AUDIT_TABLES, AuditRecord
from carenet.store.engine import build_engine
from carenet.store.schema import metadata


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = build_engine(db_url)
    metadata.create_all(eng, tables=AUDIT_TABLES)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def event() -> Callable[..., AuditRecord]:
    return make_event
