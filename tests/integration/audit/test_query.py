"""The regulator's and the patient's questions over the audit events, on both stores."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine
from tests.integration.audit.helpers import make_event

from carenet.audit import append, count, query, read_event, to_fhir
from carenet.fhir.validation import validate_resource

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_who_looked_at_my_record(engine: Engine) -> None:
    me = f"Patient/{uuid.uuid4()}"
    someone = f"Patient/{uuid.uuid4()}"
    doctor = f"Practitioner/{uuid.uuid4()}"
    nurse = f"Practitioner/{uuid.uuid4()}"
    events = [
        make_event(agent=doctor, patient=me, recorded=T0 + 1000, subtype="read"),
        make_event(agent=nurse, patient=me, recorded=T0 + 2000, subtype="search", query="a=b"),
        make_event(agent=doctor, patient=someone, recorded=T0 + 3000, subtype="update"),
        make_event(agent=doctor, patient=me, recorded=T0 + 4000, subtype="read", outcome=4),
        make_event(agent="anonymous", patient=None, recorded=T0 + 5000, subtype="login-failed"),
    ]
    for e in events:
        with engine.begin() as conn:
            append(conn, e)

    with engine.connect() as conn:

        def agents_times(**kw: object) -> list[tuple[str, int]]:
            return [(r["agent"], r["recorded"]) for r in query(conn, **kw)]  # type: ignore[arg-type]

        # Newest first.
        assert agents_times(patient=me) == [
            (doctor, T0 + 4000),
            (nurse, T0 + 2000),
            (doctor, T0 + 1000),
        ]
        assert count(conn, patient=me) == 3
        assert agents_times(agent=doctor) == [
            (doctor, T0 + 4000),
            (doctor, T0 + 3000),
            (doctor, T0 + 1000),
        ]
        assert agents_times(since_ms=T0 + 2000, until_ms=T0 + 4000) == [
            (doctor, T0 + 3000),
            (nurse, T0 + 2000),
        ]
        assert agents_times(action="U") == [(doctor, T0 + 3000)]
        assert agents_times(action="E") == [("anonymous", T0 + 5000), (nurse, T0 + 2000)]
        assert agents_times(outcome=4) == [(doctor, T0 + 4000)]
        assert agents_times(patient=me, agent=doctor, outcome=0) == [(doctor, T0 + 1000)]
        assert agents_times(limit=2, offset=1) == [(doctor, T0 + 4000), (doctor, T0 + 3000)]
        assert agents_times(patient=f"Patient/{uuid.uuid4()}") == []
        assert count(conn) == 5

        rows = query(conn)
        for row in rows:
            event = to_fhir(row, source="urn:carenet:node:test")
            assert [i for i in validate_resource(event) if i.severity == "error"] == []
            assert read_event(conn, row["chain_id"], row["seq"]) == row
        assert read_event(conn, 99, 1) is None
