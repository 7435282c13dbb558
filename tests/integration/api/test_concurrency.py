"""Optimistic locking under real concurrency: 50 simultaneous If-Match updates of one resource."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

HEADERS = {"Content-Type": "application/fhir+json"}


@pytest.mark.slow
def test_fifty_concurrent_if_match_updates_one_winner_per_version_none_lost(
    live_server, live_token
):
    base = live_server
    headers = {**HEADERS, "Authorization": f"Bearer {live_token}"}
    created = httpx.post(
        f"{base}/Patient", json={"resourceType": "Patient", "active": True}, headers=headers
    ).json()
    pid = created["id"]

    def attempt(i: int) -> int:
        body = {**created, "name": [{"text": f"writer {i}"}]}
        with httpx.Client(timeout=30) as c:
            r = c.put(f"{base}/Patient/{pid}", json=body, headers={**headers, "If-Match": 'W/"1"'})
            return r.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, range(50)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(412) == 49, statuses

    # Now 50 writers each retrying with the current version: every write lands, none is lost.
    def increment(i: int) -> int:
        with httpx.Client(timeout=30) as c:
            for _ in range(200):
                cur = c.get(f"{base}/Patient/{pid}", headers=headers)
                version = cur.json()["meta"]["versionId"]
                body = {**cur.json(), "name": [{"text": f"writer {i}"}]}
                r = c.put(
                    f"{base}/Patient/{pid}",
                    json=body,
                    headers={**headers, "If-Match": f'W/"{version}"'},
                )
                if r.status_code == 200:
                    return int(r.json()["meta"]["versionId"])
                assert r.status_code == 412, r.text
            raise AssertionError("writer starved")

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        versions = list(pool.map(increment, range(50)))
    assert sorted(versions) == list(range(3, 53))
    hist = httpx.get(
        f"{base}/Patient/{pid}/_history", params={"_count": 100}, headers=headers
    ).json()
    assert hist["total"] == 52
    # every one of the 50 second-round writes is there, exactly once, none overwritten unseen
    second_round = sorted(
        e["resource"]["name"][0]["text"]
        for e in hist["entry"]
        if int(e["response"]["etag"][3:-1]) >= 3
    )
    assert second_round == sorted(f"writer {i}" for i in range(50))
