"""SMART scopes: v2 and v1 grammar, malformed input, allows/restrictions/covers."""

from __future__ import annotations

import pytest

from carenet.access.scopes import (
    INTERACTION_PERMISSION,
    Scope,
    ScopeError,
    all_covered,
    allows,
    covers,
    describe,
    parse_scope,
    parse_scopes,
    permission_for,
    restrictions,
)


@pytest.mark.parametrize(
    ("text", "context", "rtype", "perms", "version"),
    [
        ("patient/*.rs", "patient", "*", "rs", 2),
        ("user/Observation.cruds", "user", "Observation", "cruds", 2),
        ("system/*.rs", "system", "*", "rs", 2),
        ("system/Patient.c", "system", "Patient", "c", 2),
        ("user/Encounter.cd", "user", "Encounter", "cd", 2),
        ("patient/*.read", "patient", "*", "rs", 1),
        ("user/*.write", "user", "*", "cud", 1),
        ("patient/*.*", "patient", "*", "cruds", 1),
        ("user/MedicationRequest.read", "user", "MedicationRequest", "rs", 1),
    ],
)
def test_resource_scopes_parse_into_context_type_and_permissions(
    text: str, context: str, rtype: str, perms: str, version: int
) -> None:
    s = parse_scope(text)
    assert (s.context, s.resource_type, s.permissions, s.version) == (
        context,
        rtype,
        frozenset(perms),
        version,
    )
    assert s.is_resource and not s.restricted and s.text == text


def test_a_v2_query_restriction_is_kept_as_pairs() -> None:
    s = parse_scope(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    )
    assert s.query == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),
    )
    assert s.restricted


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    ],
)
def test_launch_and_identity_scopes_are_known(text: str) -> None:
    s = parse_scope(text)
    assert s == Scope(text=text)
    assert not s.is_resource


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("*.*", "SCOPE-UNKNOWN"),
        ("admin", "SCOPE-UNKNOWN"),
        ("patient/*", "SCOPE-UNKNOWN"),
        ("patient/*.", "SCOPE-UNKNOWN"),
        ("patient/.rs", "SCOPE-UNKNOWN"),
        ("/*.rs", "SCOPE-UNKNOWN"),
        ("Patient/*.rs", "SCOPE-CONTEXT-UNKNOWN"),
        ("group/*.rs", "SCOPE-CONTEXT-UNKNOWN"),
        ("patient/Foo.rs", "SCOPE-RESOURCE-TYPE-UNKNOWN"),
        ("patient/observation.rs", "SCOPE-RESOURCE-TYPE-UNKNOWN"),
        ("patient/*.sr", "SCOPE-PERMISSION-INVALID"),
        ("patient/*.rr", "SCOPE-PERMISSION-INVALID"),
        ("patient/*.x", "SCOPE-PERMISSION-INVALID"),
        ("patient/*.cruds*", "SCOPE-PERMISSION-INVALID"),
        ("patient/*.READ", "SCOPE-PERMISSION-INVALID"),
        ("patient/*.read?category=x", "SCOPE-QUERY-INVALID"),
        ("patient/Observation.rs?", "SCOPE-QUERY-INVALID"),
        ("patient/Observation.rs?novalue", "SCOPE-QUERY-INVALID"),
        ("patient/*.rs\x00", "SCOPE-MALFORMED"),
        ('patient/"*.rs', "SCOPE-MALFORMED"),
        ("病人/*.rs", "SCOPE-MALFORMED"),
        ("p" * 1001, "SCOPE-MALFORMED"),
    ],
)
def test_malformed_scopes_are_refused_with_a_code(text: str, code: str) -> None:
    with pytest.raises(ScopeError) as info:
        parse_scope(text)
    assert info.value.codes == [code]


def test_parse_scopes_reports_every_bad_token_and_removes_duplicates() -> None:
    assert [s.text for s in parse_scopes("  patient/*.rs  openid patient/*.rs ")] == [
        "patient/*.rs",
        "openid",
    ]
    assert parse_scopes("") == [] and parse_scopes(None) == [] and parse_scopes("   ") == []
    with pytest.raises(ScopeError) as info:
        parse_scopes("patient/*.rs bogus user/Foo.r")
    assert info.value.codes == ["SCOPE-UNKNOWN", "SCOPE-RESOURCE-TYPE-UNKNOWN"]
    with pytest.raises(ScopeError) as too_many:
        parse_scopes(" ".join(f"x{i}" for i in range(201)))
    assert too_many.value.codes == ["SCOPE-TOO-MANY"]


@pytest.mark.parametrize(
    ("interaction", "letter"),
    [
        ("read", "r"),
        ("vread", "r"),
        ("history", "r"),
        ("search", "s"),
        ("create", "c"),
        ("update", "u"),
        ("patch", "u"),
        ("delete", "d"),
    ],
)
def test_each_interaction_needs_its_letter(interaction: str, letter: str) -> None:
    assert INTERACTION_PERMISSION[interaction] == letter
    for perms in ("c", "r", "u", "d", "s"):
        scopes = parse_scopes(f"patient/Observation.{perms}")
        assert allows(scopes, {"patient"}, "Observation", interaction) is (perms == letter)


def test_allows_checks_context_type_and_wildcard() -> None:
    scopes = parse_scopes("patient/*.rs user/Observation.cruds")
    assert allows(scopes, {"patient"}, "Condition", "read")
    assert not allows(scopes, {"patient"}, "Condition", "create")
    assert allows(scopes, {"user"}, "Observation", "delete")
    assert not allows(scopes, {"user"}, "Condition", "read")
    assert not allows(scopes, {"system"}, "Observation", "read")
    assert allows(scopes, {"user", "patient"}, "Condition", "search")
    assert not allows([], {"patient"}, "Patient", "read")
    assert not allows(parse_scopes("openid launch/patient"), {"patient"}, "Patient", "read")


def test_v1_write_does_not_grant_read_and_star_grants_everything() -> None:
    assert not allows(parse_scopes("user/*.write"), {"user"}, "Observation", "read")
    assert allows(parse_scopes("user/*.write"), {"user"}, "Observation", "patch")
    for interaction in INTERACTION_PERMISSION:
        assert allows(parse_scopes("system/*.*"), {"system"}, "Task", interaction)


def test_operations_say_what_they_need() -> None:
    scopes = parse_scopes("patient/Appointment.rs")
    assert allows(scopes, {"patient"}, "Appointment", "operation", needs="r")
    assert not allows(scopes, {"patient"}, "Appointment", "operation", needs="cu")
    with pytest.raises(ValueError):
        permission_for("operation")
    with pytest.raises(ValueError):
        permission_for("operation", "x")
    with pytest.raises(ValueError):
        permission_for("fly")


def test_restricted_scopes_grant_only_through_their_queries() -> None:
    lab = "patient/Observation.rs?category=laboratory"
    scopes = parse_scopes(lab)
    assert not allows(scopes, {"patient"}, "Observation", "search")
    assert restrictions(scopes, {"patient"}, "Observation", "search") == [
        (("category", "laboratory"),)
    ]
    assert restrictions(scopes, {"patient"}, "Observation", "create") == []
    both = parse_scopes(lab + " patient/*.rs")
    assert allows(both, {"patient"}, "Observation", "search")
    assert restrictions(both, {"patient"}, "Observation", "search") is None


def test_covers_allows_narrower_requests_only() -> None:
    [wide] = parse_scopes("system/*.cruds")
    assert covers(wide, parse_scope("system/Observation.rs"))
    assert covers(wide, parse_scope("system/*.read"))
    assert not covers(wide, parse_scope("user/Observation.rs"))
    [obs] = parse_scopes("patient/Observation.rs")
    assert not covers(obs, parse_scope("patient/*.rs"))
    assert not covers(obs, parse_scope("patient/Observation.rus"))
    assert covers(obs, parse_scope("patient/Observation.rs?category=laboratory"))
    lab = parse_scope("patient/Observation.rs?category=laboratory")
    assert not covers(lab, parse_scope("patient/Observation.rs"))
    assert covers(lab, parse_scope("patient/Observation.r?category=laboratory"))
    assert covers(parse_scope("openid"), parse_scope("openid"))
    assert not covers(parse_scope("openid"), parse_scope("fhirUser"))
    allowed = parse_scopes("launch/patient patient/*.rs offline_access")
    assert all_covered(allowed, parse_scopes("patient/Observation.r launch/patient"))
    assert not all_covered(allowed, parse_scopes("patient/Observation.r online_access"))
    assert all_covered(allowed, [])


def test_describe_names_the_permissions_in_both_languages() -> None:
    zh, en = describe(parse_scope("patient/*.rs"))
    assert zh == "读取、检索患者本人的全部资源"
    assert en == "read, search the patient's all resources"
    zh, en = describe(parse_scope("offline_access"))
    assert "离线" in zh and "offline" in en
