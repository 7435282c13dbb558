"""The access-control matrix, generated from the one table of rules (access/permissions.py):
for every role x resource type x interaction, HTTP says allowed or denied as the table says,
on both stores. Data scoping (which instances) is tested in test_data_scope.py; here an
allowed interaction on an instance the actor cannot see answers 404, a denied one 401/403."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tests.conftest import SHARED_DATA

from carenet.access.permissions import INTERACTIONS, ROLES, scope_for
from carenet.fhir.definitions import resource_types

EXAMPLES = SHARED_DATA / "fhir-examples" / "r4-spec-examples"


def _example(rtype: str) -> dict:
    """A valid instance to create: an official example without id/meta, or a bare resource."""
    for f in sorted(EXAMPLES.glob(f"{rtype}-*.json")) if EXAMPLES.exists() else []:
        body = json.loads(Path(f).read_text(encoding="utf-8"))
        body.pop("id", None)
        body.pop("meta", None)
        return body
    return {"resourceType": rtype}


def _request(world, who: str | None, rtype: str, interaction: str):  # noqa: ANN001, ANN202
    h = world.as_(who)
    missing = str(uuid.uuid4())
    c = world.client
    if interaction == "search":
        return c.get(f"/fhir/{rtype}", params={"_count": "1"}, headers=h)
    if interaction == "create":
        return c.post(f"/fhir/{rtype}", content=json.dumps(_example(rtype)), headers=h)
    if interaction == "read":
        return c.get(f"/fhir/{rtype}/{missing}", headers=h)
    if interaction == "vread":
        return c.get(f"/fhir/{rtype}/{missing}/_history/1", headers=h)
    if interaction == "history":
        return c.get(f"/fhir/{rtype}/{missing}/_history", headers=h)
    if interaction == "update":
        return c.put(
            f"/fhir/{rtype}/{missing}",
            content=json.dumps({**_example(rtype), "id": missing}),
            headers=h,
        )
    if interaction == "patch":
        return c.patch(
            f"/fhir/{rtype}/{missing}",
            json=[{"op": "add", "path": "/language", "value": "zh"}],
            headers={**h, "Content-Type": "application/json-patch+json"},
        )
    if interaction == "delete":
        return c.delete(f"/fhir/{rtype}/{missing}", headers=h)
    raise AssertionError(interaction)


def _codes(r) -> set[str]:  # noqa: ANN001
    try:
        issues = r.json().get("issue", [])
    except ValueError:
        return set()
    return {c.get("code") for i in issues for c in (i.get("details") or {}).get("coding", [])}


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_every_resource_type_and_interaction_is_allowed_or_denied_as_the_table_says(world, role):
    who = None if role == "anonymous" else role
    wrong: list[str] = []
    for rtype in sorted(resource_types()):
        for interaction in INTERACTIONS:
            expected = scope_for(role, rtype, interaction)
            if rtype == "AuditEvent" and interaction not in ("read", "search"):
                expected = "none-by-design"  # nobody writes AuditEvents; no history/vread
            r = _request(world, who, rtype, interaction)
            # 403 ACCESS-OUT-OF-SCOPE: the role may do this to the type, but not to this
            # instance (e.g. a patient writing data about someone else) — allowed by the table.
            codes = _codes(r)
            denied = r.status_code in (401, 405) or (
                r.status_code == 403 and "ACCESS-OUT-OF-SCOPE" not in codes
            )
            if expected == "none-by-design":
                ok = denied or (r.status_code == 400 and "not-supported" in r.text)
            elif expected == "none":
                # anonymous callers are told to log in (401); known roles are forbidden (403)
                ok = r.status_code == (401 if who is None else 403)
            else:
                ok = not denied and r.status_code < 500
            if not ok:
                wrong.append(
                    f"{role} {interaction} {rtype}: expected {expected}, got {r.status_code} {r.text[:160]}"
                )
    assert wrong == [], f"{len(wrong)} cells differ from the table:\n" + "\n".join(wrong[:40])


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_is_allowed_or_denied_as_the_table_says(world, role):
    """The operations' rows of the table (permissions.OPERATIONS): a role without a row is
    refused before anything else is looked at; one with a row gets past the access check (to
    a 400 for the empty Parameters, a 404 for the instance that does not exist, or a 200 for a
    search that needs no parameter)."""
    from carenet.access.permissions import OPERATIONS, operation_scope
    from carenet.api.operations import registry

    assert {op.key for op in registry().values()} == set(OPERATIONS)
    who = None if role == "anonymous" else role
    wrong: list[str] = []
    for op in registry().values():
        path = (
            f"/fhir/{op.resource_type}/{uuid.uuid4()}/${op.code}"
            if op.instance
            else f"/fhir/{op.resource_type}/${op.code}"
        )
        r = world.client.post(path, json={"resourceType": "Parameters"}, headers=world.as_(who))
        expected = operation_scope(role, op.key)
        if expected == "none":
            ok = r.status_code == (401 if who is None else 403)
        else:
            ok = r.status_code in (200, 400, 404) and "ACCESS-DENIED" not in _codes(r)
        if not ok:
            wrong.append(
                f"{role} {op.key}: expected {expected}, got {r.status_code} {r.text[:160]}"
            )
    assert wrong == [], "\n".join(wrong)
