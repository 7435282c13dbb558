"""Practitioner roles per institution (多点执业): register, verify, suspend, active roles."""

from __future__ import annotations

from carenet.access.practitioners import (
    active_roles,
    register_practitioner_role,
    require_active_role,
    suspend_practitioner_role,
    verify_practitioner_role,
)

from .conftest import Env, codes
from .fixtures import organization, practitioner, staff


def register(env: Env, pract: str, org: str, licence: str, **kw: object) -> str:
    role = env.run(
        lambda c, r: register_practitioner_role(
            c,
            r,
            env.ctx,
            practitioner_ref=pract,
            organization_ref=org,
            role="doctor",
            licence_number=licence,
            **kw,  # type: ignore[arg-type]
        )
    )
    return f"PractitionerRole/{role['id']}"


def active(env: Env, pract: str, org: str | None = None) -> list[str]:
    roles = env.run(lambda c, r: active_roles(c, r, pract, organization_ref=org))
    return [f"PractitionerRole/{x['id']}" for x in roles]


def test_multi_site_roles_act_only_once_verified_by_their_own_institution(env: Env) -> None:
    county, township = organization(env), organization(env, "分水镇卫生院")
    pract, licence = practitioner(env)
    role1 = register(env, pract, county, licence, qualification_number="Q" + licence)
    role2 = register(env, pract, township, licence)
    assert active(env, pract) == []
    admin1 = staff(env, "institution_admin", organization_ref=county)
    env.run(lambda c, r: verify_practitioner_role(c, r, env.ctx, role1, admin1.id))
    assert active(env, pract) == [role1]
    err = env.refused(lambda c, r: verify_practitioner_role(c, r, env.ctx, role2, admin1.id))
    assert codes(err) == ["AUTH-ROLE-VERIFIER-NOT-ALLOWED"]
    regional = staff(env, "regional_admin")
    env.run(lambda c, r: verify_practitioner_role(c, r, env.ctx, role2, regional.id))
    assert sorted(active(env, pract)) == sorted([role1, role2])
    assert active(env, pract, township) == [role2]
    resource = env.run(lambda c, r: r.read("PractitionerRole", role1.split("/")[1]))
    assert resource["active"] is True
    assert {i["system"] for i in resource["identifier"]} >= {
        "https://carenet.example.org/fhir/sid/practitioner-role",
        "https://carenet.example.org/fhir/sid/physician-practising-certificate",
        "https://carenet.example.org/fhir/sid/physician-qualification-certificate",
    }


def test_suspension_takes_effect_on_the_next_request(env: Env) -> None:
    org = organization(env)
    pract, licence = practitioner(env)
    role = register(env, pract, org, licence)
    admin = staff(env, "institution_admin", organization_ref=org)
    env.run(lambda c, r: verify_practitioner_role(c, r, env.ctx, role, admin.id))
    assert env.run(lambda c, r: require_active_role(c, r, pract, org))["active"] is True
    env.run(lambda c, r: suspend_practitioner_role(c, r, env.ctx, role, admin.id, "执业证书注销"))
    assert active(env, pract) == []
    err = env.refused(lambda c, r: require_active_role(c, r, pract, org))
    assert (err.status, codes(err)) == (403, ["AUTH-ROLE-NOT-ACTIVE"])
    again = env.refused(
        lambda c, r: suspend_practitioner_role(c, r, env.ctx, role, admin.id, "again")
    )
    assert codes(again) == ["AUTH-ROLE-STATE"]
    env.run(lambda c, r: verify_practitioner_role(c, r, env.ctx, role, admin.id))
    assert active(env, pract) == [role]


def test_activating_the_resource_alone_does_not_make_a_pending_role_act(env: Env) -> None:
    org = organization(env)
    pract, licence = practitioner(env)
    role = register(env, pract, org, licence)
    role_id = role.split("/")[1]

    def activate(c, r):  # noqa: ANN001, ANN202
        current = r.read("PractitionerRole", role_id)
        return r.update("PractitionerRole", role_id, {**current, "active": True})

    env.run(activate)
    assert active(env, pract) == []


def test_a_deactivated_practitioner_has_no_active_roles(env: Env) -> None:
    org = organization(env)
    pract, licence = practitioner(env)
    role = register(env, pract, org, licence)
    admin = staff(env, "institution_admin", organization_ref=org)
    env.run(lambda c, r: verify_practitioner_role(c, r, env.ctx, role, admin.id))
    pid = pract.split("/")[1]

    def deactivate(c, r):  # noqa: ANN001, ANN202
        current = r.read("Practitioner", pid)
        return r.update("Practitioner", pid, {**current, "active": False})

    env.run(deactivate)
    assert active(env, pract) == []


def test_registration_refusals_change_nothing(env: Env) -> None:
    org = organization(env)
    pract, licence = practitioner(env)
    register(env, pract, org, licence)
    before = env.counts()
    assert codes(env.refused(lambda c, r: _reg(c, r, env, pract, org, licence))) == [
        "AUTH-ROLE-DUPLICATE"
    ]
    other_org = organization(env)
    before = env.counts()
    assert codes(env.refused(lambda c, r: _reg(c, r, env, pract, other_org, "999"))) == [
        "AUTH-ROLE-LICENCE-MISMATCH"
    ]
    assert codes(
        env.refused(lambda c, r: _reg(c, r, env, pract, "Organization/nope", licence))
    ) == ["AUTH-REFERENCE-INVALID"]
    assert env.counts() == before


def _reg(c, r, env: Env, pract: str, org: str, licence: str):  # noqa: ANN001, ANN202
    return register_practitioner_role(
        c,
        r,
        env.ctx,
        practitioner_ref=pract,
        organization_ref=org,
        role="doctor",
        licence_number=licence,
    )
