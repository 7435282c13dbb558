"""Engines as build_engine makes them, on each database."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from carenet.store.engine import build_engine


def test_a_database_error_names_the_statement_but_not_its_values(db_url):
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as err:
            conn.execute(text("SELECT * FROM no_such_table WHERE code = :c"), {"c": "13800138000"})
    finally:
        engine.dispose()
    assert "no_such_table" in str(err.value)
    assert "13800138000" not in str(err.value)
