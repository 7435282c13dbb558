"""AuditRecord validation, canonical bytes and chain hashes (pure, no database)."""

from __future__ import annotations

import uuid

import pytest
import rfc8785

from carenet.audit.chain import chain_for
from carenet.audit.record import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditRecord,
    CanonicalTemplate,
    canonical_bytes,
    chain_hash,
    row_hash,
)
from carenet.crypto.hashing import sm3


def record(**kw: object) -> AuditRecord:
    base: dict[str, object] = {
        "subtype": "read",
        "agent": f"Practitioner/{uuid.uuid4()}",
        "patient": f"Patient/{uuid.uuid4()}",
        "entities": (f"Observation/{uuid.uuid4()}",),
        "request_id": uuid.uuid4().hex,
        "recorded": 1_767_225_600_000,
    }
    base.update(kw)
    return AuditRecord(**base)  # type: ignore[arg-type]


def test_action_defaults_from_the_interaction() -> None:
    assert record(subtype="read").action == "R"
    assert record(subtype="search").action == "E"
    assert record(subtype="create").action == "C"
    assert record(subtype="patch").action == "U"
    assert record(subtype="delete").action == "D"
    assert record(subtype="export").action == "R"
    assert record(subtype="login").action == "E"
    assert record(subtype="operation", action="R").action == "R"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"subtype": "peek"}, "unknown audit subtype 'peek'"),
        ({"action": "X"}, "audit action must be one of C R U D E, not 'X'"),
        ({"outcome": 5}, "audit outcome must be 0, 4, 8 or 12, not 5"),
        ({"agent": ""}, "an audit event needs an agent"),
        ({"subtype": "break-glass", "purpose": "  "}, "break-glass needs a stated reason"),
    ],
)
def test_rejects_an_event_that_fhir_could_not_express(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        record(**kw)


def test_text_is_cleaned_to_what_both_stores_keep() -> None:
    r = record(query="name=a\x00b&x=\udc80", entities=["Patient/1\x00"])
    assert r.query == "name=a\ufffdb&x=?"
    assert r.entities == ("Patient/1\ufffd",)


def test_detail_is_hashed_as_it_will_be_read_back() -> None:
    r = record(detail={"status": 403, "ratio": 0.1, "nested": {"b": [1, 2]}})
    values = r.row_values()
    assert values["detail"] == '{"status":403,"ratio":0.1,"nested":{"b":[1,2]}}'
    assert values["entities"].startswith('["Observation/')


def test_template_renders_exactly_the_canonical_json_of_every_field() -> None:
    r = record(query="名字=张三&_count=10", purpose="抢救", detail={"z": 1, "a": "é"})
    fields = {**r.fields(), "chain_id": 3}
    for seq in (1, 9, 10, 123456789):
        full = {**fields, "seq": seq}
        assert set(full) == set(HASHED_FIELDS)
        assert CanonicalTemplate(fields).render(seq) == rfc8785.dumps(full)
        assert canonical_bytes(full) == rfc8785.dumps(full)


def test_chain_hash_is_sm3_of_the_raw_previous_hash_then_the_event() -> None:
    canonical = b'{"a":1}'
    assert chain_hash(GENESIS_HASH, canonical) == sm3(bytes(32) + canonical).hex()
    assert len(chain_hash(GENESIS_HASH, canonical)) == 64


def test_a_stored_row_rehashes_to_its_hash_and_any_change_shows() -> None:
    r = record(detail={"k": "v"})
    fields = {**r.fields(), "chain_id": 0, "seq": 1}
    digest = chain_hash(GENESIS_HASH, canonical_bytes(fields))
    row = {**r.row_values(), "chain_id": 0, "seq": 1, "prev_hash": GENESIS_HASH, "hash": digest}
    assert row_hash(row) == digest
    for name, value in [("agent", "Practitioner/x"), ("seq", 2), ("chain_id", 1), ("outcome", 4)]:
        assert row_hash({**row, name: value}) != digest, name


def test_a_request_always_lands_on_the_same_chain() -> None:
    rid = uuid.uuid4().hex
    assert chain_for(rid, 8) == chain_for(rid, 8)
    assert 0 <= chain_for(rid, 8) < 8
    spread = {chain_for(uuid.uuid4().hex, 8) for _ in range(400)}
    assert spread == set(range(8))
    assert {chain_for(None, 4) for _ in range(200)} == set(range(4))
    with pytest.raises(ValueError, match="at least one audit chain"):
        chain_for(rid, 0)


def test_canonical_json_is_rfc8785_on_the_fast_path_and_off_it() -> None:
    from carenet.audit.record import jcs

    cases: list[object] = [
        {"b": '\x00\x1f"\\/\u2028é张😀', "a": [1, -(2**53 - 1), None, True]},
        {"ratio": 1.0, "big": 1e21, "small": 5e-7},  # floats: rfc8785 package
        {"é": 1, "z": 2, "\ue000": 3, "😀": 4},  # non-ASCII keys: rfc8785 package
    ]
    for value in cases:
        assert jcs(value) == rfc8785.dumps(value)
    with pytest.raises(ValueError, match="audit detail cannot be canonicalised"):
        AuditRecord(subtype="read", agent="Device/x", detail={"n": 2**60})
