"""A real FHIR client (fhirpy) against a running server: create, read, search with paging,
update with versioning, delete."""

from __future__ import annotations

import uuid

import pytest
from fhirpy import SyncFHIRClient


def test_fhirpy_round_trip(live_server, live_token):
    client = SyncFHIRClient(live_server, authorization=f"Bearer {live_token}")
    tag = uuid.uuid4().hex[:8]
    created = []
    for i in range(7):
        p = client.resource(
            "Patient",
            identifier=[{"system": "urn:test:fhirpy", "value": f"{tag}-{i}"}],
            name=[{"family": "张", "given": [f"三{i}"]}],
            gender="female" if i % 2 else "male",
        )
        p.save()
        created.append(p)
    assert all(p.id for p in created)
    got = client.reference("Patient", created[0].id).to_resource()
    assert got["name"][0]["family"] == "张"

    found = client.resources("Patient").search(identifier=f"urn:test:fhirpy|{tag}-3").fetch()
    assert [p.id for p in found] == [created[3].id]

    # paging: fetch_all follows next links
    all_pages = client.resources("Patient").search(family="张").limit(3).fetch_all()
    assert {p.id for p in created} <= {p.id for p in all_pages}

    p = created[1]
    p["active"] = False
    p.save()
    assert p["meta"]["versionId"] == "2"

    created[2].delete()
    with pytest.raises(Exception):  # noqa: B017 - fhirpy raises its own error for 410
        client.reference("Patient", created[2].id).to_resource()
