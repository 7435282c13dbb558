"""Guardians act for the minors and elders they are bound to (RelatedPerson, Consent)."""

from __future__ import annotations

from datetime import date

from carenet.access.accounts import Account, register_patient
from carenet.access.guardians import acting_for, bind_dependant, bind_guardian, revoke_guardian
from carenet.access.realname import resolve_patient, verify_real_name

from .conftest import Env, codes
from .fixtures import phone, resident_id


def verified(env: Env, name: str = "王芳", birth: date = date(1985, 5, 1)) -> Account:
    account = env.run(lambda c, r: register_patient(c, env.ctx, phone=phone()))
    rid = resident_id(birth)
    return env.run(lambda c, r: verify_real_name(c, r, env.ctx, account.id, name, rid)).account


def ward(env: Env, birth: date, name: str = "王小明") -> str:
    rid = resident_id(birth, sex="male")
    return env.run(lambda c, r: resolve_patient(c, r, env.ctx, name, rid)).patient_ref


def acts_for(env: Env, account_id: str) -> list[str]:
    return env.run(lambda c, r: acting_for(c, account_id, clock=env.clock))


def test_a_mother_binds_her_child_under_14_with_consent(env: Env) -> None:
    mother = verified(env)
    child = ward(env, date(2016, 4, 2))
    g = env.run(
        lambda c, r: bind_guardian(c, r, env.ctx, mother.id, child, "MTH", guardian_consent=True)
    )
    assert (g.basis, g.relationship, g.patient_ref) == ("minor", "MTH", child)
    related = env.run(lambda c, r: r.read("RelatedPerson", g.related_person_ref.split("/")[1]))
    assert related["patient"] == {"reference": child}
    assert related["relationship"][0]["coding"][0]["code"] == "MTH"
    assert related["name"][0]["text"] == "王芳"
    assert g.consent_ref is not None
    consent = env.run(lambda c, r: r.read("Consent", g.consent_ref.split("/")[1]))
    assert consent["performer"] == [{"reference": g.related_person_ref}]
    assert acts_for(env, mother.id) == [mother.fhir_ref, child]


def test_a_child_under_14_without_consent_is_refused_and_nothing_changes(env: Env) -> None:
    mother = verified(env)
    child = ward(env, date(2016, 4, 2))
    before = env.counts()
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, mother.id, child, "MTH"))
    assert (err.status, codes(err)) == (422, ["AUTH-GUARDIAN-CONSENT-REQUIRED"])
    assert env.counts() == before


def test_a_teenager_of_15_needs_no_consent_record(env: Env) -> None:
    father = verified(env, "王强")
    teen = ward(env, date(2010, 6, 1))
    g = env.run(lambda c, r: bind_guardian(c, r, env.ctx, father.id, teen, "FTH"))
    assert g.consent_ref is None


def test_guardianship_of_a_minor_ends_at_18(env: Env) -> None:
    father = verified(env, "王强")
    teen = ward(env, date(2008, 1, 20))  # 18 on 2026-01-20
    env.run(lambda c, r: bind_guardian(c, r, env.ctx, father.id, teen, "FTH"))
    assert teen in acts_for(env, father.id)
    env.clock.advance(4 * 86400 + 11 * 3600)  # 2026-01-19 23:00 in Shanghai
    assert teen in acts_for(env, father.id)
    env.clock.advance(3600)
    assert acts_for(env, father.id) == [father.fhir_ref]


def test_adults_are_not_wards_and_elders_are(env: Env) -> None:
    son = verified(env, "李军", date(1975, 1, 1))
    adult = ward(env, date(1990, 1, 1), "李四")
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, son.id, adult, "SIB"))
    assert codes(err) == ["AUTH-GUARDIAN-WARD-NOT-ELIGIBLE"]
    elder = ward(env, date(1950, 1, 1), "李大爷")
    g = env.run(lambda c, r: bind_guardian(c, r, env.ctx, son.id, elder, "SONC"))
    assert (g.basis, g.ends_at) == ("elder", None)
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, son.id, elder, "SONC"))
    assert codes(err) == ["AUTH-GUARDIAN-ALREADY-BOUND"]


def test_relationship_must_fit_and_be_a_known_code(env: Env) -> None:
    parent = verified(env)
    child = ward(env, date(2012, 1, 1))
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, parent.id, child, "CHILD"))
    assert codes(err) == ["AUTH-GUARDIAN-RELATIONSHIP-NOT-ALLOWED"]
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, parent.id, child, "FRND"))
    assert codes(err) == ["AUTH-GUARDIAN-RELATIONSHIP-INVALID"]


def test_a_minor_cannot_be_a_guardian(env: Env) -> None:
    young = verified(env, "王小红", date(2010, 1, 1))
    grandma = ward(env, date(1950, 1, 1), "王奶奶")
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, young.id, grandma, "GRNDCHILD"))
    assert codes(err) == ["AUTH-GUARDIAN-NOT-ADULT"]


def test_unverified_accounts_and_self_binding_are_refused(env: Env) -> None:
    unverified = env.run(lambda c, r: register_patient(c, env.ctx, phone=phone()))
    child = ward(env, date(2015, 1, 1))
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, unverified.id, child, "MTH"))
    assert codes(err) == ["AUTH-REALNAME-REQUIRED"]
    me = verified(env)
    err = env.refused(lambda c, r: bind_guardian(c, r, env.ctx, me.id, me.fhir_ref or "", "MTH"))
    assert codes(err) == ["AUTH-GUARDIAN-SELF"]


def test_two_parents_adding_the_same_child_share_one_patient(env: Env) -> None:
    mother, father = verified(env, "张丽"), verified(env, "王刚")
    rid = resident_id(date(2017, 7, 7))
    a = env.run(
        lambda c, r: bind_dependant(
            c, r, env.ctx, mother.id, "王乐乐", rid, "MTH", guardian_consent=True
        )
    )
    b = env.run(
        lambda c, r: bind_dependant(
            c, r, env.ctx, father.id, "王乐乐", rid, "FTH", guardian_consent=True
        )
    )
    assert a.patient_ref == b.patient_ref


def test_revoking_a_guardianship_takes_effect_at_once(env: Env) -> None:
    daughter = verified(env)
    elder = ward(env, date(1940, 1, 1), "王奶奶")
    g = env.run(lambda c, r: bind_guardian(c, r, env.ctx, daughter.id, elder, "DAUC"))
    env.run(lambda c, r: revoke_guardian(c, r, env.ctx, daughter.id, elder))
    assert acts_for(env, daughter.id) == [daughter.fhir_ref]
    related = env.run(lambda c, r: r.read("RelatedPerson", g.related_person_ref.split("/")[1]))
    assert related["active"] is False
    again = env.run(lambda c, r: bind_guardian(c, r, env.ctx, daughter.id, elder, "DAUC"))
    assert again.id == g.id and elder in acts_for(env, daughter.id)


def test_acting_for_an_unknown_account_is_nobody(env: Env) -> None:
    assert acts_for(env, "00000000-0000-0000-0000-000000000000") == []
