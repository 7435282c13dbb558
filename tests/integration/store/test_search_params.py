"""Search by each parameter type, modifier and prefix, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.integration.store.conftest import Store

from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store import indexer


def patient(**kw: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": str(uuid.uuid4()), **kw}


def test_string_default_is_case_and_accent_insensitive_starts_with(store: Store) -> None:
    a = store.add(patient(name=[{"family": "Müller", "given": ["Ann"]}]))
    b = store.add(patient(name=[{"family": "Mull", "given": ["Bob"]}]))
    store.add(patient(name=[{"family": "Smith"}]))
    assert store.idset("Patient", [("family", "mul")]) == {a, b}
    assert store.idset("Patient", [("family", "MÜLLER")]) == {a}
    assert store.idset("Patient", [("name", "ann")]) == {a}
    assert store.idset("Patient", [("family", "ull")]) == set()


def test_string_chinese_names_starts_with_contains_and_exact(store: Store) -> None:
    a = store.add(patient(name=[{"family": "王", "given": ["小明"]}]))
    b = store.add(patient(name=[{"text": "王小红"}]))
    c = store.add(patient(name=[{"family": "李", "given": ["明"]}]))
    assert store.idset("Patient", [("name", "王小明")]) == {a}
    assert store.idset("Patient", [("name", "王")]) == {a, b}
    assert store.idset("Patient", [("name:contains", "小")]) == {a, b}
    assert store.idset("Patient", [("name:contains", "明")]) == {a, c}
    assert store.idset("Patient", [("family:exact", "王")]) == {a}
    assert store.idset("Patient", [("name:exact", "王小")]) == set()


def test_string_exact_is_case_sensitive(store: Store) -> None:
    a = store.add(patient(name=[{"family": "Smith"}]))
    store.add(patient(name=[{"family": "smith"}]))
    store.add(patient(name=[{"family": "Smithson"}]))
    assert store.idset("Patient", [("family:exact", "Smith")]) == {a}


def test_string_contains_escapes_like_wildcards(store: Store) -> None:
    a = store.add(patient(name=[{"family": "a%b_c"}]))
    store.add(patient(name=[{"family": "axbyc"}]))
    assert store.idset("Patient", [("family:contains", "%b_")]) == {a}
    assert store.idset("Patient", [("family", "a%")]) == {a}


def test_address_parts(store: Store) -> None:
    a = store.add(
        patient(
            address=[
                {
                    "line": ["长安街1号"],
                    "city": "北京",
                    "district": "东城区",
                    "postalCode": "100010",
                }
            ]
        )
    )
    store.add(patient(address=[{"city": "上海"}]))
    assert store.idset("Patient", [("address", "长安街")]) == {a}
    assert store.idset("Patient", [("address-city", "北京")]) == {a}
    assert store.idset("Patient", [("address", "东城")]) == {a}
    assert store.idset("Patient", [("address-postalcode", "1000")]) == {a}


def test_or_within_value_and_repeated_parameter_is_and(store: Store) -> None:
    a = store.add(patient(gender="male", name=[{"family": "Zhang"}]))
    b = store.add(patient(gender="female", name=[{"family": "Zhao"}]))
    store.add(patient(gender="other", name=[{"family": "Zhou"}]))
    assert store.idset("Patient", [("gender", "male,female")]) == {a, b}
    assert store.idset("Patient", [("family", "zhang,zhao")]) == {a, b}
    assert store.idset("Patient", [("family", "zh"), ("gender", "female")]) == {b}
    assert store.idset("Patient", [("family", "zhang"), ("family", "zhao")]) == set()


def coded(system: str | None, code: str, display: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"code": code}
    if system:
        c["system"] = system
    if display:
        c["display"] = display
    return c


def test_token_system_rules(store: Store) -> None:
    loinc = "http://loinc.org"
    a = store.add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [coded(loinc, "1234-5")]},
        }
    )
    b = store.add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [coded(None, "1234-5")]},
        }
    )
    c = store.add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [coded("http://other", "1234-5")]},
        }
    )
    d = store.add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [coded(loinc, "999")]},
        }
    )
    assert store.idset("Observation", [("code", "1234-5")]) == {a, b, c}
    assert store.idset("Observation", [("code", f"{loinc}|1234-5")]) == {a}
    assert store.idset("Observation", [("code", "|1234-5")]) == {b}
    assert store.idset("Observation", [("code", f"{loinc}|")]) == {a, d}
    assert store.idset("Observation", [("code:not", f"{loinc}|1234-5")]) == {b, c, d}
    assert store.idset("Observation", [("code", "1234-")]) == set()


def test_token_text_modifier_and_identifier_and_boolean(store: Store) -> None:
    a = store.add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [coded("http://loinc.org", "8480-6", "Systolic blood pressure")],
                "text": "收缩压",
            },
        }
    )
    b = store.add(
        patient(identifier=[{"system": "urn:id:cn", "value": "110101199001011234"}], active=True)
    )
    c = store.add(
        patient(
            identifier=[{"system": "urn:id:other", "value": "110101199001011234"}], active=False
        )
    )
    assert store.idset("Observation", [("code:text", "收缩")]) == {a}
    assert store.idset("Observation", [("code:text", "blood")]) == {a}
    assert store.idset("Observation", [("code:text", "diastolic")]) == set()
    assert store.idset("Patient", [("identifier", "urn:id:cn|110101199001011234")]) == {b}
    assert store.idset("Patient", [("identifier", "110101199001011234")]) == {b, c}
    assert store.idset("Patient", [("active", "true")]) == {b}
    assert store.idset("Patient", [("active", "false")]) == {c}


def test_token_on_contact_point(store: Store) -> None:
    a = store.add(
        patient(
            telecom=[
                {"system": "phone", "value": "13800000000"},
                {"system": "email", "value": "a@x.cn"},
            ]
        )
    )
    store.add(patient(telecom=[{"system": "email", "value": "13800000000"}]))
    assert store.idset("Patient", [("phone", "13800000000")]) == {a}
    assert store.idset("Patient", [("email", "a@x.cn")]) == {a}


def test_missing_modifier(store: Store) -> None:
    a = store.add(patient(gender="male", birthDate="1990-01-01"))
    b = store.add(patient(name=[{"family": "X"}]))
    assert store.idset("Patient", [("gender:missing", "true")]) == {b}
    assert store.idset("Patient", [("gender:missing", "false")]) == {a}
    assert store.idset("Patient", [("birthdate:missing", "true")]) == {b}
    assert store.idset("Patient", [("name:missing", "false")]) == {b}
    assert store.idset("Patient", [("organization:missing", "true")]) == {a, b}
    with pytest.raises(OperationOutcomeError) as exc:
        store.search("Patient", [("gender:missing", "maybe")])
    assert exc.value.status == 400
    assert exc.value.issues[0].expression == ("gender:missing",)


def obs(**kw: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"text": "x"},
        **kw,
    }


def test_date_precision_year_month_day(store: Store) -> None:
    a = store.add(patient(birthDate="1990-05-17"))
    b = store.add(patient(birthDate="1990-12-31"))
    c = store.add(patient(birthDate="1991-01-01"))
    d = store.add(patient(birthDate="1990"))
    assert store.idset("Patient", [("birthdate", "1990")]) == {a, b, d}
    assert store.idset("Patient", [("birthdate", "1990-05")]) == {a}
    assert store.idset("Patient", [("birthdate", "1990-05-17")]) == {a}
    assert store.idset("Patient", [("birthdate", "eq1990-05-17")]) == {a}
    assert store.idset("Patient", [("birthdate", "ne1990")]) == {c}
    assert store.idset("Patient", [("birthdate", "gt1990-05-17")]) == {b, c, d}
    assert store.idset("Patient", [("birthdate", "lt1990-05-17")]) == {d}
    assert store.idset("Patient", [("birthdate", "ge1990-05-17")]) == {a, b, c, d}
    assert store.idset("Patient", [("birthdate", "le1990-12-31")]) == {a, b, d}
    assert store.idset("Patient", [("birthdate", "sa1990-12-30")]) == {b, c}
    assert store.idset("Patient", [("birthdate", "eb1991")]) == {a, b, d}


def test_date_second_minute_and_timezones(store: Store) -> None:
    a = store.add(obs(effectiveDateTime="2020-01-01T10:00:00+08:00"))
    b = store.add(obs(effectiveDateTime="2019-12-31T17:30:00Z"))  # 2020-01-01T01:30 in Shanghai
    c = store.add(obs(effectiveDateTime="2020-01-01T10:00:59+08:00"))
    assert store.idset("Observation", [("date", "2020-01-01T10:00:00+08:00")]) == {a}
    assert store.idset("Observation", [("date", "2020-01-01T02:00:00Z")]) == {a}
    assert store.idset("Observation", [("date", "2020-01-01T10:00:00")]) == {a}  # local time
    assert store.idset("Observation", [("date", "2020-01-01T10:00")]) == {a, c}  # minute
    assert store.idset("Observation", [("date", "2020-01-01T10:00:01")]) == set()
    assert store.idset("Observation", [("date", "2020-01-01")]) == {a, b, c}
    assert store.idset("Observation", [("date", "2019-12-31")]) == set()
    assert store.idset("Observation", [("date", "2019-12-31")], tz="UTC") == {b}
    # An unencoded '+' arrives as a space.
    assert store.idset("Observation", [("date", "2020-01-01T10:00:00 08:00")]) == {a}
    assert store.idset("Observation", [("date", "gt2020-01-01T10:00:00+08:00")]) == {c}


def test_date_periods_against_prefixes(store: Store) -> None:
    p = store.add(obs(effectivePeriod={"start": "2020-01-10", "end": "2020-01-20"}))
    open_end = store.add(obs(effectivePeriod={"start": "2020-02-01"}))
    q = lambda v: store.idset("Observation", [("date", v)])  # noqa: E731
    assert q("eq2020-01") == {p}
    assert q("eq2020-01-15") == set()
    assert q("ne2020-01-15") == {p, open_end}
    assert q("ne2020-01") == {open_end}
    assert q("sa2020-01-09") == {p, open_end}
    assert q("sa2020-01-10") == {open_end}
    assert q("eb2020-01-21") == {p}
    assert q("eb2020-01-20") == set()
    assert q("gt2020-01-19") == {p, open_end}
    assert q("gt2020-01-20") == {open_end}
    assert q("lt2020-01-11") == {p}
    assert q("lt2020-01-10") == set()
    assert q("ge2020-01-20") == {open_end}
    assert q("le2020-01-10") == set()
    assert q("gt2030") == {open_end}
    # ap widens the value by 10% of its distance from now (at least a day).
    jan15 = 1579017600000
    assert store.idset("Observation", [("date", "ap2020-01-15")], now_ms=jan15) == {p}
    assert store.idset("Observation", [("date", "ap2020-01-21")], now_ms=jan15) == {p}
    assert store.idset("Observation", [("date", "ap2020-01-22")], now_ms=jan15) == set()


def test_last_updated_and_id(store: Store) -> None:
    base = 1577844000000  # 2020-01-01T10:00:00+08:00
    a = store.add(patient(), last_updated=base + 500)
    b = store.add(patient(), last_updated=base + 1500)
    assert store.idset("Patient", [("_lastUpdated", "2020-01-01T10:00:00+08:00")]) == {a}
    assert store.idset("Patient", [("_lastUpdated", "gt2020-01-01T10:00:00+08:00")]) == {b}
    assert store.idset("Patient", [("_lastUpdated", "ge2020-01-01T10:00:00+08:00")]) == {a, b}
    assert store.idset("Patient", [("_lastUpdated", "lt2020-01-01T10:00:01+08:00")]) == {a}
    assert store.idset("Patient", [("_lastUpdated", "2020-01-01T10:00")]) == {a, b}
    assert store.idset("Patient", [("_id", f"{a},{b}")]) == {a, b}
    assert store.idset("Patient", [("_id", a)]) == {a}


@pytest.mark.parametrize(
    "value", ["2020-13", "abc", "xx2020", "2020-01-01T25:00", "2020-02-30", "2020-1-1"]
)
def test_malformed_date_is_400_with_the_parameter(store: Store, value: str) -> None:
    with pytest.raises(OperationOutcomeError) as exc:
        store.search("Patient", [("birthdate", value)])
    assert exc.value.status == 400
    assert exc.value.issues[0].expression == ("birthdate",)


def risk(p: Any) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": "Patient/x"},
        "prediction": [{"probabilityDecimal": p}],
    }


def test_number_precision_and_prefixes(store: Store) -> None:
    ids = {v: store.add(risk(v)) for v in (5.3, 5.35, 5.4, 5.449, 5.45)}
    q = lambda v: store.idset("RiskAssessment", [("probability", v)])  # noqa: E731
    assert q("5.4") == {ids[5.35], ids[5.4], ids[5.449]}
    assert q("5.45") == {ids[5.449], ids[5.45]}
    assert q("5.40") == {ids[5.4]}
    assert q("gt5.4") == {ids[5.449], ids[5.45]}
    assert q("ge5.4") == {ids[5.4], ids[5.449], ids[5.45]}
    assert q("lt5.35") == {ids[5.3]}
    assert q("le5.35") == {ids[5.3], ids[5.35]}
    assert q("ne5.4") == {ids[5.3], ids[5.45]}
    assert q("1e1") == set(ids.values())
    assert q("5.3,5.45") == {ids[5.3], ids[5.449], ids[5.45]}
    for bad in ("5.4x", "gt", "zz5", "1e", "NaN"):
        with pytest.raises(OperationOutcomeError) as exc:
            q(bad)
        assert exc.value.status == 400
        assert exc.value.issues[0].expression == ("probability",)


UCUM = "http://unitsofmeasure.org"


def test_quantity_number_system_code_and_unit(store: Store) -> None:
    a = store.add(obs(valueQuantity={"value": 5.4, "system": UCUM, "code": "mg", "unit": "mg"}))
    b = store.add(
        obs(valueQuantity={"value": 5.45, "system": UCUM, "code": "mg", "unit": "milligram"})
    )
    c = store.add(
        obs(valueQuantity={"value": 120, "system": UCUM, "code": "mm[Hg]", "unit": "mmHg"})
    )
    q = lambda v: store.idset("Observation", [("value-quantity", v)])  # noqa: E731
    assert q("5.4") == {a}
    assert q(f"5.4|{UCUM}|mg") == {a}
    assert q("5.4||mg") == {a}
    assert q("5.45||milligram") == {b}
    assert q(f"5.4|{UCUM}|g") == set()
    assert q(f"gt5|{UCUM}|mg") == {a, b}
    assert q("ge120||mmHg") == {c}
    assert q("lt200") == {a, b, c}
    assert q("ap110") == {c}
    with pytest.raises(OperationOutcomeError):
        q("5.4|mg")


def test_reference_forms(store: Store) -> None:
    pid, gid = str(uuid.uuid4()), str(uuid.uuid4())
    o1 = store.add(obs(subject={"reference": f"Patient/{pid}"}))
    o2 = store.add(obs(subject={"reference": f"Group/{gid}"}))
    o3 = store.add(obs(subject={"reference": f"http://other.org/fhir/Patient/{pid}"}))
    o4 = store.add(obs(subject={"reference": f"Patient/{pid}/_history/2"}))
    o5 = store.add(obs(subject={"identifier": {"system": "urn:id", "value": "42"}}))
    contained = store.add(obs(subject={"reference": "#contained"}))
    q = lambda n, v: store.idset("Observation", [(n, v)])  # noqa: E731
    assert q("subject", pid) == {o1, o3, o4}
    assert q("subject", f"Patient/{pid}") == {o1, o3, o4}
    assert q("subject", f"Patient/{pid}/_history/2") == {o4}
    assert q("subject:Patient", pid) == {o1, o3, o4}
    assert q("subject:Group", gid) == {o2}
    assert q("subject:Group", pid) == set()
    assert q("patient", pid) == {o1, o3, o4}
    assert q("patient", gid) == set()
    assert q("subject", f"http://other.org/fhir/Patient/{pid}") == {o3}
    assert q("subject:identifier", "urn:id|42") == {o5}
    # Contained references are not indexed.
    assert q("subject:missing", "true") == {contained}
    with pytest.raises(OperationOutcomeError):
        q("subject", "Patient/")


def test_canonical_reference_with_version(store: Store) -> None:
    url = "http://example.org/Questionnaire/phq9"
    v1 = store.add(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": f"{url}|1.0",
        }
    )
    v2 = store.add(
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "questionnaire": f"{url}|2.0",
        }
    )
    plain = store.add(
        {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": url}
    )
    assert store.idset("QuestionnaireResponse", [("questionnaire", url)]) == {v1, v2, plain}
    assert store.idset("QuestionnaireResponse", [("questionnaire", f"{url}|2.0")]) == {v2}


def test_uri_exact_below_above(store: Store) -> None:
    a = store.add(
        {"resourceType": "ValueSet", "status": "active", "url": "http://acme.org/fhir/ValueSet/a"}
    )
    b = store.add(
        {"resourceType": "ValueSet", "status": "active", "url": "http://acme.org/fhir/ValueSet/a/b"}
    )
    store.add({"resourceType": "ValueSet", "status": "active", "url": "http://acme.org/other"})
    assert store.idset("ValueSet", [("url", "http://acme.org/fhir/ValueSet/a")]) == {a}
    assert store.idset("ValueSet", [("url:below", "http://acme.org/fhir")]) == {a, b}
    assert store.idset("ValueSet", [("url:below", "http://acme.org/fhir/ValueSet/a")]) == {a, b}
    assert store.idset("ValueSet", [("url:above", "http://acme.org/fhir/ValueSet/a/b/c")]) == {a, b}
    assert store.idset("ValueSet", [("url:above", "http://acme.org/fhir/ValueSet/a")]) == {a}


def test_meta_tag_security_profile(store: Store) -> None:
    a = store.add(
        patient(
            meta={
                "tag": [{"system": "urn:t", "code": "vip"}],
                "security": [{"system": "urn:s", "code": "R"}],
                "profile": ["http://p/a"],
            }
        )
    )
    b = store.add(patient(meta={"tag": [{"system": "urn:t", "code": "std"}]}))
    assert store.idset("Patient", [("_tag", "urn:t|vip")]) == {a}
    assert store.idset("Patient", [("_tag", "urn:t|")]) == {a, b}
    assert store.idset("Patient", [("_tag:not", "vip")]) == {b}
    assert store.idset("Patient", [("_security", "R")]) == {a}
    assert store.idset("Patient", [("_profile", "http://p/a")]) == {a}
    assert store.idset("Patient", [("_profile:missing", "true")]) == {b}


def bp(systolic: float, diastolic: float) -> dict[str, Any]:
    def comp(code: str, v: float) -> dict[str, Any]:
        return {
            "code": {"coding": [coded("http://loinc.org", code)]},
            "valueQuantity": {"value": v, "system": UCUM, "code": "mm[Hg]"},
        }

    return obs(
        code={"coding": [coded("http://loinc.org", "85354-9")]},
        component=[comp("8480-6", systolic), comp("8462-4", diastolic)],
    )


def test_composite_parameters_match_within_one_component(store: Store) -> None:
    high = store.add(bp(150, 95))
    normal = store.add(bp(120, 80))
    weight = store.add(
        obs(
            code={"coding": [coded("http://loinc.org", "29463-7")]},
            valueQuantity={"value": 70, "system": UCUM, "code": "kg"},
        )
    )
    q = lambda n, v: store.idset("Observation", [(n, v)])  # noqa: E731
    assert q("component-code-value-quantity", "http://loinc.org|8480-6$gt140") == {high}
    assert q("component-code-value-quantity", "8462-4$gt100") == set()
    # 120 is a systolic value, 80 diastolic: the pair must come from the same component.
    assert q("component-code-value-quantity", "8462-4$120") == set()
    assert q("component-code-value-quantity", "8462-4$80,8462-4$95") == {high, normal}
    assert q("code-value-quantity", "http://loinc.org|29463-7$ge70") == {weight}
    assert q("code-value-quantity", "29463-7$lt70") == set()
    with pytest.raises(OperationOutcomeError):
        q("code-value-quantity", "29463-7")


def test_delete_rows_removes_a_resource_from_every_index(store: Store) -> None:
    a = store.add(patient(name=[{"family": "Gone"}], gender="male", birthDate="1990"))
    b = store.add(patient(name=[{"family": "Kept"}], gender="male"))
    with store.engine.begin() as conn:
        indexer.delete_rows(conn, [("Patient", a)])
    assert store.idset("Patient", [("gender", "male")]) == {b}
    assert store.idset("Patient", [("name", "gone")]) == set()
    assert store.idset("Patient", [("birthdate:missing", "true")]) == {a, b}
