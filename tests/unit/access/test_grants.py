"""Consent provisions and grant periods decide whether a record is opened to an actor (PRIV-1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from carenet.access.grants import consent_permits, grant_applies

ORG = "Organization/h2"
DOC = "Practitioner/d9"
TZ = "Asia/Shanghai"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


NOW = ms("2026-11-22T10:00:00+08:00")


def consent(provision: dict, status: str = "active") -> dict:
    return {"resourceType": "Consent", "status": status, "provision": provision}


def actor(ref: str) -> dict:
    return {"role": {"text": "treating"}, "reference": {"reference": ref}}


def test_a_permit_naming_the_institution_opens_the_record() -> None:
    assert consent_permits(consent({"type": "permit", "actor": [actor(ORG)]}), [ORG], NOW)


def test_a_base_provision_without_a_type_counts_as_permit() -> None:
    assert consent_permits(consent({"actor": [actor(ORG)]}), [ORG], NOW)


def test_a_deny_naming_the_institution_opens_nothing() -> None:
    assert not consent_permits(consent({"type": "deny", "actor": [actor(ORG)]}), [ORG], NOW)


def test_an_inactive_consent_or_one_naming_someone_else_opens_nothing() -> None:
    assert not consent_permits(consent({"actor": [actor(ORG)]}, "inactive"), [ORG], NOW)
    assert not consent_permits(consent({"actor": [actor("Organization/h3")]}), [ORG], NOW)


def test_a_nested_deny_excepts_one_doctor_from_a_permit_to_everyone_named() -> None:
    c = consent(
        {
            "type": "permit",
            "actor": [actor(ORG)],
            "provision": [{"type": "deny", "actor": [actor(DOC)]}],
        }
    )
    assert consent_permits(c, [ORG], NOW)
    assert not consent_permits(c, [ORG, DOC], NOW)  # the most specific provision decides


def test_a_nested_provision_without_type_is_the_exception_to_its_parent() -> None:
    c = consent({"type": "deny", "provision": [{"actor": [actor(DOC)]}]})
    assert consent_permits(c, [DOC], NOW)


@pytest.mark.parametrize(
    ("period", "opens"),
    [
        ({"start": "2026-11-22"}, True),
        ({"start": "2026-11-23"}, False),
        ({"end": "2026-11-22"}, True),  # a date end lasts to the end of that day
        ({"end": "2026-11-21"}, False),
        ({"start": "2026-11-22T09:59:59+08:00", "end": "2026-11-22T10:00:00+08:00"}, True),
        ({"end": "2026-11-22T09:59:59+08:00"}, False),
        ({"start": "not a date"}, False),
    ],
)
def test_a_provision_applies_only_within_its_period(period: dict, opens: bool) -> None:
    c = consent({"type": "permit", "period": period, "actor": [actor(ORG)]})
    assert consent_permits(c, [ORG], NOW, TZ) is opens


def test_a_team_or_contract_grants_only_within_its_period() -> None:
    team = {"resourceType": "CareTeam", "period": {"end": "2026-11-21"}}
    assert not grant_applies(team, [ORG], NOW, TZ)
    team["period"] = {"start": "2026-01-01"}
    assert grant_applies(team, [ORG], NOW, TZ)
    contract = {"resourceType": "Contract", "applies": {"start": "2027-01-01"}}
    assert not grant_applies(contract, [ORG], NOW, TZ)
    assert grant_applies({"resourceType": "ServiceRequest"}, [ORG], NOW, TZ)
