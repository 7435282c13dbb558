"""Which prebuilt statements may skip SQLAlchemy on PostgreSQL (store/direct.py): every hot one
of a request, and none that SQLAlchemy would change on the way."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    Numeric,
    PickleType,
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from carenet.access import oauth_tokens
from carenet.adapters.notify import outbox
from carenet.audit import chain
from carenet.store import repository
from carenet.store.direct import Prebuilt

PG = PGDialect_psycopg()
_t = Table(
    "t",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("doc", JSON),
    Column("blob", PickleType),
    Column("amount", Numeric(10, 2)),
    Column("code", String(8), default="x"),
)

HOT = {
    "token lookup": oauth_tokens._PRINCIPAL,
    "read by id": repository._CURRENT_ROW,
    "read by id, locked": repository._CURRENT_ROW_FOR_UPDATE,
    "version write": repository._WRITE_VERSION,
    "read with targets": repository._WITH_TARGETS,
    "referencing": repository._REFERENCING,
    "audit append, head known": chain._APPEND_IF_HEAD_KNOWN,
    "audit append, head locked": chain._INSERT_AND_MOVE_HEAD,
    "audit head lock": chain._LOCK_HEAD,
    "audit head move": chain._RUN_MOVE_HEAD,
    "outbox row": outbox._QUEUE,
}


@pytest.mark.parametrize("name", sorted(HOT))
def test_the_hot_statements_of_a_request_go_straight_to_the_driver(name):
    plan = HOT[name].plan(PG)
    assert plan.why is None
    assert plan.direct


def test_a_literal_value_in_a_statement_is_sent_as_its_parameter():
    plan = oauth_tokens._PRINCIPAL.plan(PG)
    assert "active" in plan.defaults.values()  # guardianships.status == "active"
    assert all(f"%({name})s" in plan.sql for name in plan.defaults)


@pytest.mark.parametrize(
    ("stmt", "why"),
    [
        (select(_t.c.id).where(_t.c.id.in_(bindparam("ids", expanding=True))), "expanded"),
        (select(_t.c.id).where(_t.c.doc == bindparam("d", type_=JSON)), "converted by its type"),
        (select(_t.c.blob).where(_t.c.id == bindparam("i")), "column 'blob' is converted"),
        (select(_t.c.amount).where(_t.c.id == bindparam("i")), "column 'amount'"),
        (insert(_t).values(id=bindparam("id")), "column defaults computed at execution"),
    ],
)
def test_a_statement_that_sqlalchemy_would_change_keeps_its_path(stmt, why):
    plan = Prebuilt(stmt).plan(PG)
    assert not plan.direct
    assert why in (plan.why or "")
