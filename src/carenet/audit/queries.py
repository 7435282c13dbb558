"""Reading audit events for the regulator and for a patient ("who looked at my record")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, RowMapping, func, select

from carenet.audit.schema import audit_events


def query(
    conn: Connection,
    *,
    patient: str | None = None,
    agent: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    action: str | None = None,
    outcome: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[RowMapping]:
    """Events matching every given criterion, newest first.

    patient and agent are exact references ("Patient/123"); since_ms is inclusive and until_ms
    exclusive (ms since the epoch, UTC). Each criterion has an index (see schema.py).
    """
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    where = _criteria(patient, agent, since_ms, until_ms, action, outcome)
    stmt = (
        select(audit_events)
        .where(*where)
        .order_by(
            audit_events.c.recorded.desc(), audit_events.c.chain_id, audit_events.c.seq.desc()
        )
        .limit(limit)
        .offset(offset)
    )
    return list(conn.execute(stmt).mappings())


def read_event(conn: Connection, chain_id: int, seq: int) -> RowMapping | None:
    """One event by its key (AuditEvent read by id "<chain>-<seq>")."""
    stmt = select(audit_events).where(
        audit_events.c.chain_id == chain_id, audit_events.c.seq == seq
    )
    return conn.execute(stmt).mappings().first()


def count(
    conn: Connection,
    *,
    patient: str | None = None,
    agent: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    action: str | None = None,
    outcome: int | None = None,
) -> int:
    """How many events ``query`` would find without limit (for Bundle.total)."""
    where = _criteria(patient, agent, since_ms, until_ms, action, outcome)
    stmt = select(func.count()).select_from(audit_events).where(*where)
    return int(conn.execute(stmt).scalar_one())


def _criteria(
    patient: str | None,
    agent: str | None,
    since_ms: int | None,
    until_ms: int | None,
    action: str | None,
    outcome: int | None,
) -> list[ColumnElement[Any]]:
    c = audit_events.c
    where: list[ColumnElement[Any]] = []
    if patient is not None:
        where.append(c.patient == patient)
    if agent is not None:
        where.append(c.agent == agent)
    if since_ms is not None:
        where.append(c.recorded >= since_ms)
    if until_ms is not None:
        where.append(c.recorded < until_ms)
    if action is not None:
        where.append(c.action == action)
    if outcome is not None:
        where.append(c.outcome == outcome)
    return where
